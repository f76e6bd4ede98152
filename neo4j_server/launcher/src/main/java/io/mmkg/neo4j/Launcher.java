package io.mmkg.neo4j;

import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;

import org.neo4j.configuration.GraphDatabaseInternalSettings;
import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.connectors.HttpConnector;
import org.neo4j.configuration.connectors.HttpsConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.graphdb.GraphDatabaseService;
import org.neo4j.graphdb.QueryExecutionException;
import org.neo4j.io.ByteUnit;
import org.neo4j.logging.Level;
import org.neo4j.logging.log4j.Log4jLogProvider;
import org.neo4j.server.configuration.ServerSettings;

/**
 * mmkg's local Neo4j 5.26 Community server.
 *
 * <p>Runs an embedded {@link DatabaseManagementService} with Bolt (and HTTP + Browser, unless
 * {@code --http-port 0}) bound to 127.0.0.1 only, authentication on, data and logs under
 * {@code --home}. The initial password of the login user comes from the environment variable named
 * by {@code --initial-password-env} (never from argv, so it does not show in {@code ps}) and is set
 * only on a store this launcher has not initialised yet (marker {@code data/}{@value #AUTH_MARKER}),
 * or when the user does not exist: a password changed later (ALTER USER, the Browser) is kept
 * across restarts. Then it prints {@code MMKG_NEO4J_READY bolt=... http=...} and blocks until
 * SIGTERM/SIGINT, when a shutdown hook shuts the DBMS down cleanly. After a hard kill the next start
 * runs normal store recovery.
 *
 * <p>Hardening: every connector on 127.0.0.1 (Bolt without TLS: loopback only; HTTPS off), LOAD CSV
 * from {@code file:} URLs refused and its import root a dedicated empty {@code <home>/import}, the
 * HTTP {@code Access-Control-Allow-Origin} header the server's own origin instead of {@code *}.
 *
 * <pre>
 * java -jar neo4j-launcher.jar --home DIR [--bolt-port 7687] [--http-port 7474]
 *      [--initial-password-env VAR] [--user neo4j] [--pagecache-mb 256] [--plugins DIR]
 * </pre>
 *
 * <p>{@code --plugins DIR} loads the procedure jars in DIR (the build puts APOC core and its libraries
 * in {@code target/plugins}); without it the plugin directory is {@code <home>/plugins}, which mmkg
 * never creates, so no plugin is loaded.
 *
 * Exit codes: 0 clean shutdown, 2 bad arguments/environment, 1 startup failure.
 */
public final class Launcher {
    static final String READY = "MMKG_NEO4J_READY";
    private static final String HOST = "127.0.0.1";
    /** Under {@code <home>/data}: this store's initial password has been set (so never reset it). */
    static final String AUTH_MARKER = "mmkg-initial-password-set";

    private Launcher() {}

    public static void main(String[] args) {
        PrintStream out = System.out;
        Options opts;
        try {
            opts = Options.parse(args);
        } catch (IllegalArgumentException e) {
            System.err.println("neo4j-launcher: " + e.getMessage());
            System.err.println(Options.USAGE);
            System.exit(2);
            return;
        }

        int javaVersion = Runtime.version().feature();
        if (javaVersion < 17 || javaVersion > 21) {
            System.err.println("neo4j-launcher: Neo4j 5.26 needs Java 17 or 21, this is Java " + javaVersion
                    + " (" + System.getProperty("java.home") + "). Set MMKG_JAVA_HOME to a Java 17 JDK/JRE.");
            System.exit(2);
            return;
        }

        String password = System.getenv(opts.passwordEnv);
        if (password == null || password.isEmpty()) {
            System.err.println("neo4j-launcher: environment variable " + opts.passwordEnv + " (the initial password)"
                    + " is empty or unset");
            System.exit(2);
            return;
        }

        DatabaseManagementService dbms;
        try {
            Files.createDirectories(opts.home);
            Files.createDirectories(importDir(opts));
            dbms = build(opts);
        } catch (Throwable e) {
            e.printStackTrace();
            System.err.println("neo4j-launcher: Neo4j failed to start: " + rootMessage(e));
            System.exit(1);
            return;
        }

        CountDownLatch stopped = new CountDownLatch(1);
        AtomicBoolean shutDown = new AtomicBoolean();
        Runnable shutdown = () -> {
            if (shutDown.compareAndSet(false, true)) {
                out.println("MMKG_NEO4J_STOPPING");
                out.flush();
                try {
                    dbms.shutdown();
                    out.println("MMKG_NEO4J_STOPPED");
                } catch (Throwable e) {
                    System.err.println("neo4j-launcher: error during shutdown: " + e);
                } finally {
                    out.flush();
                    stopped.countDown();
                }
            }
        };
        Runtime.getRuntime().addShutdownHook(new Thread(shutdown, "mmkg-neo4j-shutdown"));

        String passwordState;
        try {
            passwordState = initialisePassword(dbms, opts.home.resolve("data").resolve(AUTH_MARKER), opts.user, password);
        } catch (Throwable e) {
            e.printStackTrace();
            System.err.println("neo4j-launcher: could not set the password of user '" + opts.user + "': "
                    + rootMessage(e));
            shutdown.run();
            System.exit(1);
            return;
        }

        String http = opts.httpPort > 0 ? "http://" + HOST + ":" + opts.httpPort : "disabled";
        out.println(READY + " bolt=bolt://" + HOST + ":" + opts.boltPort + " http=" + http
                + " home=" + opts.home + " password=" + passwordState + " neo4j=" + neo4jVersion());
        out.flush();

        try {
            stopped.await();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static DatabaseManagementService build(Options opts) {
        boolean http = opts.httpPort > 0;
        return new DatabaseManagementServiceBuilder(opts.home)
                .setUserLogProvider(new Log4jLogProvider(System.out, Level.INFO))
                // security and network: loopback only
                .setConfig(GraphDatabaseSettings.auth_enabled, true)
                .setConfig(GraphDatabaseSettings.default_listen_address, new SocketAddress(HOST))
                .setConfig(GraphDatabaseSettings.default_advertised_address, new SocketAddress(HOST))
                .setConfig(BoltConnector.enabled, true)
                .setConfig(BoltConnector.listen_address, new SocketAddress(HOST, opts.boltPort))
                .setConfig(BoltConnector.advertised_address, new SocketAddress(HOST, opts.boltPort))
                .setConfig(HttpConnector.enabled, http)
                .setConfig(HttpConnector.listen_address, new SocketAddress(HOST, http ? opts.httpPort : 7474))
                .setConfig(HttpConnector.advertised_address, new SocketAddress(HOST, http ? opts.httpPort : 7474))
                .setConfig(HttpsConnector.enabled, false)
                // loopback only, so no TLS on Bolt; a server reached over a network needs TLS (README)
                .setConfig(BoltConnector.encryption_level, BoltConnector.EncryptionLevel.DISABLED)
                // a page elsewhere must not read the HTTP API through the user's browser
                .setConfig(ServerSettings.http_access_control_allow_origin, "http://" + HOST + ":" + opts.httpPort)
                // LOAD CSV cannot read the JVM user's files: file: URLs refused, import root empty
                .setConfig(GraphDatabaseSettings.allow_file_urls, false)
                .setConfig(GraphDatabaseSettings.load_csv_file_url_root, importDir(opts))
                .setConfig(GraphDatabaseSettings.udc_enabled, false)
                .setConfig(GraphDatabaseSettings.plugin_dir,
                        opts.plugins != null ? opts.plugins : opts.home.resolve("plugins"))
                // modest resources: a developer laptop / 2-core CI box
                .setConfig(GraphDatabaseSettings.pagecache_memory, ByteUnit.mebiBytes(opts.pagecacheMb))
                .setConfig(GraphDatabaseSettings.keep_logical_logs, "2 files")
                .setConfig(GraphDatabaseSettings.logical_log_rotation_threshold, ByteUnit.mebiBytes(64))
                // stores are checkpointed before the network layer stops; don't idle 10 s in Netty
                .setConfig(GraphDatabaseInternalSettings.netty_server_shutdown_quiet_period, 0)
                .setConfig(GraphDatabaseInternalSettings.netty_server_shutdown_timeout, Duration.ofSeconds(5))
                .build();
    }

    /** The LOAD CSV import root: a directory of its own, empty unless someone puts files there. */
    static Path importDir(Options opts) {
        return opts.home.resolve("import");
    }

    /**
     * Gives {@code user} its initial {@code password}, once per store: creates the user if it is
     * missing; sets its password (no forced change) only while {@code marker} does not exist, then
     * creates the marker. A password changed after that is never touched. A crash between setting
     * the password and writing the marker only repeats the same step at the next start.
     *
     * @return what happened: {@code created} (the user), {@code set} (the initial password) or
     *     {@code kept} (the store's password as it was)
     */
    static String initialisePassword(DatabaseManagementService dbms, Path marker, String user, String password)
            throws java.io.IOException {
        GraphDatabaseService system = dbms.database(GraphDatabaseSettings.SYSTEM_DATABASE_NAME);
        String quoted = "`" + user.replace("`", "``") + "`";
        boolean exists = system.executeTransactionally(
                "SHOW USERS YIELD user WHERE user = $u RETURN count(*) AS n",
                Map.of("u", user),
                result -> ((Number) result.next().get("n")).longValue() > 0);
        String state = "kept";
        if (!exists) {
            system.executeTransactionally(
                    "CREATE USER " + quoted + " SET PASSWORD $p CHANGE NOT REQUIRED", Map.of("p", password));
            state = "created";
        } else if (!Files.exists(marker)) {
            setPassword(system, quoted, password);
            state = "set";
        }
        if (!Files.exists(marker)) {
            Files.createDirectories(marker.getParent());
            Files.writeString(marker, "the initial password of this store was set; later changes are kept\n");
        }
        return state;
    }

    private static void setPassword(GraphDatabaseService system, String quoted, String password) {
        try {
            system.executeTransactionally(
                    "ALTER USER " + quoted + " SET PASSWORD $p CHANGE NOT REQUIRED", Map.of("p", password));
        } catch (QueryExecutionException e) {
            String msg = String.valueOf(e.getMessage());
            if (!msg.contains("cannot be the same")) {
                throw e;
            }
            // Same password as before: only make sure no password change is pending.
            system.executeTransactionally("ALTER USER " + quoted + " SET PASSWORD CHANGE NOT REQUIRED");
        }
    }

    private static String rootMessage(Throwable e) {
        Throwable root = e;
        while (root.getCause() != null && root.getCause() != root) {
            root = root.getCause();
        }
        return root == e ? String.valueOf(e) : e + " (cause: " + root + ")";
    }

    private static String neo4jVersion() {
        Package p = DatabaseManagementService.class.getPackage();
        String v = p == null ? null : p.getImplementationVersion();
        return v == null ? "unknown" : v;
    }

    static final class Options {
        static final String USAGE = "usage: neo4j-launcher --home DIR [--bolt-port N] [--http-port N (0 = off)]"
                + " [--initial-password-env VAR] [--user NAME] [--pagecache-mb N] [--plugins DIR]";

        Path home;
        int boltPort = 7687;
        int httpPort = 7474;
        String passwordEnv = "MMKG_NEO4J_PASSWORD";
        String user = "neo4j";
        long pagecacheMb = 256;
        Path plugins;

        static Options parse(String[] args) {
            Options o = new Options();
            for (int i = 0; i < args.length; i++) {
                String a = args[i];
                if (a.equals("-h") || a.equals("--help")) {
                    throw new IllegalArgumentException("help requested");
                }
                if (i + 1 >= args.length) {
                    throw new IllegalArgumentException("missing value for " + a);
                }
                String v = args[++i];
                switch (a) {
                    case "--home" -> o.home = Path.of(v).toAbsolutePath().normalize();
                    case "--bolt-port" -> o.boltPort = port(a, v, false);
                    case "--http-port" -> o.httpPort = port(a, v, true);
                    case "--initial-password-env" -> o.passwordEnv = v;
                    case "--user" -> o.user = v;
                    case "--pagecache-mb" -> o.pagecacheMb = Long.parseLong(v);
                    case "--plugins" -> o.plugins = Path.of(v).toAbsolutePath().normalize();
                    default -> throw new IllegalArgumentException("unknown argument " + a);
                }
            }
            if (o.home == null) {
                throw new IllegalArgumentException("--home is required");
            }
            if (o.httpPort == o.boltPort) {
                throw new IllegalArgumentException("--bolt-port and --http-port must differ");
            }
            return o;
        }

        private static int port(String name, String v, boolean zeroAllowed) {
            int p;
            try {
                p = Integer.parseInt(v);
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException(name + " must be a number, got " + v);
            }
            if (p < (zeroAllowed ? 0 : 1) || p > 65535) {
                throw new IllegalArgumentException(name + " out of range: " + v);
            }
            return p;
        }
    }
}
