"""MG-VMoE hyper-parameters: one documented dataclass, defaults with their reasons.

The defaults follow the reference (docs: ``shared/docs/mg-vmoe.md``) where the CPU budget allows, and
say so where they do not. Nothing here imports torch; a config is plain JSON in every checkpoint.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

#: Entity markers, added to the text encoder's vocabulary as special tokens (MiniLM has no [unusedN]
#: convention worth trusting, so new rows are added; see ``modeling.TextTokenEncoder``).
MARKERS: tuple[str, ...] = ("<e>", "</e>", "<h>", "</h>", "<t>", "</t>")


@dataclass
class MGVMoEConfig:
    # --- task and encoders -----------------------------------------------------------------------------
    task: str = "mre"  # "met" (entity typing, one span) or "mre" (relation, head + tail span)
    # Encoders are frozen (CPU budget, docs/model.md): their token outputs are cached once per sample.
    text_encoder: str = ""  # folder for transformers AutoModel; "" = packaged all-MiniLM-L6-v2 (models.encoders)
    image_encoder: str = ""  # EfficientNet-Lite0 weights file; "" = packaged weights (models.encoders)
    text_hidden: int = 384  # width of the text encoder's tokens (MiniLM-L6: 384; BERT-base: 768)
    image_hidden: int = 1280  # width of the image region tokens (EfficientNet-Lite0 last map: 1280 x 7x7)
    image_size: int = 224  # EfficientNet-Lite0's native input; gives the 7x7 = 49 region grid
    max_length: int = 128  # reference value; tweets are far shorter, truncation is counted, not silent
    tuned_layers: int = 0  # > 0: the text encoder's top N layers are fine-tuned with the heads (copies initialised
    #                       from the encoder, saved in the checkpoint); features are cached at their input, and
    #                       learned head / tail embeddings (zero at the start) are added to each entity's tokens
    #                       there, so the tuned layers read the post *for this pair*. 0 = frozen encoder
    tuned_lr: float = 2e-5  # step size of the tuned encoder layers (the reference fine-tunes BERT at 1e-5)
    # How far the kept weights go from the untrained model towards the trained one: init + weight_mix * (trained - init),
    # applied once after early stopping, before the threshold is calibrated (WiSE-FT, Wortsman et al., CVPR 2022:
    # weight-space ensembling of a zero-shot model and its fine-tuned self keeps much of the zero-shot model's
    # transfer). With the similarity prior the untrained model *is* label similarity, so 1 = the trained model
    # (the reference), 0 = label similarity, 0.5 = WiSE-FT's own fixed value. Needs similarity_prior > 0.
    weight_mix: float = 1.0
    text_input: str = "markers"  # "markers" (reference): one encoder pass per marked mention / pair, an entity
    #                              is its start marker's state; "spans": each post encoded once, unmarked, an
    #                              entity is the mean of its word pieces (what the pipeline runs: encode once)
    # --- heads -----------------------------------------------------------------------------------------
    hidden: int = 384  # common token width; image tokens are projected to it ("project to the text width")
    num_experts: int = 8  # E = 8 as in the reference
    vmoe_dim: int = 64  # latent width of each expert's Gaussian; < 384 so 8 experts fit the 2-core CPU budget
    proj_dim: int = 256  # scorer projection d (reference: 256 for MRE, 768 for MET; one value here)
    dropout: float = 0.1  # reference dropout before the scorer projections
    sentence_pool: str = "cls"  # first slot of h_e: "cls" (reference) or "mean" (how sentence-transformers
    #                             pool); mean was no better on validation classes with the frozen MiniLM
    score_scale: float = 0.0  # 0 = raw dot product <P_x h, P_c h_c> (reference); > 0 = scale * cosine
    similarity_prior: float = 0.0  # > 0 adds prior * cos(mean text, label) and zero-inits P_x, so training
    #                                starts from label similarity (not in the reference; off = reference)
    prior_pool: str = "text"  # what the similarity prior compares with the label: "text" (mean of all
    #                          tokens) or "entities" (mean of the entity spans; needs text_input="spans")
    argument_prior: float = 0.0  # MRE, > 0 adds prior * (cos(head span, head type) + cos(tail span, tail type)),
    #                              the relation's argument types from the label set (not in the reference)
    argument_input: str = "span"  # what the argument prior reads of each entity: "span" (its span in the post),
    #                               "surface" (its words encoded alone: what type of thing it names, without
    #                               the post's context) or "both" (the mean of the two)
    fusion: str = "attention"  # "attention" (MG-VMoE), "concat" (mean image + h_e baseline), "none" (text-only)
    # --- ablation switches -----------------------------------------------------------------------------
    use_vmoe: bool = True  # False = "w/o VMoE": a plain linear projection of tokens instead of the experts
    use_vat: bool = True  # False = "w/o MG-VAT"
    use_infonce: bool = True  # False = "w/o InfoNCE"
    use_image: bool = True  # False = every post is treated as image-less (learned no-image token)
    label_text: str = "name"  # "name" (reference) or "description" (models.label_descriptions)
    sample_at_inference: bool = False  # mean mu at inference unless measured better (see docs/model.md)
    # --- losses ----------------------------------------------------------------------------------------
    beta: float = 1.0  # L = L_rank + beta * (L_VMoE + L_InfoNCE + L_VAT), reference beta = 1
    # Free bits (Kingma et al. 2016) for the VMoE KL: the KL term counts only above this many nats per token, so
    # the latent may carry that much at no cost instead of collapsing to the prior (0: the reference, no free bits).
    kl_free_bits: float = 0.0
    vat_weight: float = 1.0  # L_VAT's weight inside beta's bracket (1: the reference)
    margin: float = 1.0  # ranking hinge margin, reference value
    infonce_temperature: float = 1.0  # reference uses raw dot products (temperature 1)
    vat_init_std: float = 1e-2  # random init of r's direction (then rescaled to vat_epsilon)
    vat_lr: float = 1e-2  # step size of r's own maximisation step (a)
    vat_r_penalty: float = 1.0  # weight of ||r||_2 in step (a), as the reference (constant once r is on the sphere)
    vat_epsilon: float = 0.5  # ||r|| after each step (a), relative to unit-norm nodes; without a fixed radius r
    #                           collapsed to 0 and L_VAT was ~1e-8 (measured; docs/model.md)
    vat_temperature: float = 0.1  # graph logits of unit nodes lie in [-1, 1]; at 1.0 L_VAT was ~6e-5 (inert)
    # --- abstention (not in the reference): learn "no class" from samples of none ------------------------
    fit_weight: float = 0.0  # > 0 adds fit_weight * a per-class logistic loss on the raw scores (gold 1, rest 0;
    #                          no-class samples 0 everywhere), so a raw-score threshold transfers to new classes
    negatives_per_batch: int = 0  # no-class samples (the split's train_negatives: MNRE None pairs) per batch
    reversed_per_batch: int = 0  # MRE: training pairs read tail-first, as no-class samples (symmetric classes
    #                              excepted), so the score tells a pair's direction
    calibrate_on: str = "pooled"  # the abstention threshold's validation pairs: "pooled" (every validation sample) or,
    #                              for relations, "validation-file" (the validation file's own related and None pairs:
    #                              about 3 None per related pair, the mix of a post's candidate pairs; see
    #                              models.data.validation_file_samples)
    selection: str = "macro_f1"  # early stopping on validation classes: "macro_f1" (reference) or, for
    #                              relations with None pairs, "pair_f0.5" (micro-F0.5, both readings of a pair)
    # --- optimisation ----------------------------------------------------------------------------------
    lr: float = 1e-3  # heads only (encoders frozen); the reference's 1e-5 is for fine-tuning BERT
    weight_decay: float = 0.0  # reference uses plain Adam
    batch_size: int = 16  # reference value
    epochs: int = 8  # reference 20; heads on cached features peak within a few epochs (curves in bench/)
    patience: int = 3  # reference 10 over 20 epochs; scaled with the epoch budget
    steps_per_epoch: int = 0  # 0 = one pass worth of class-balanced draws (len(train) / batch)
    eval_batch_size: int = 256  # inference only, memory-bound not compute-bound
    seed: int = 0  # reference seed
    # --- labels the checkpoint was trained/selected/tested on (filled by training) ----------------------
    extra: dict = field(default_factory=dict)  # free-form provenance (data protocol, fold, split seed)

    def __post_init__(self) -> None:
        if self.task not in ("met", "mre"):
            raise ValueError(f"task must be 'met' or 'mre', got {self.task!r}")
        if self.fusion not in ("attention", "concat", "none"):
            raise ValueError(f"fusion must be attention|concat|none, got {self.fusion!r}")
        if self.sentence_pool not in ("cls", "mean"):
            raise ValueError(f"sentence_pool must be cls|mean, got {self.sentence_pool!r}")
        if self.text_input not in ("markers", "spans"):
            raise ValueError(f"text_input must be markers|spans, got {self.text_input!r}")
        if self.prior_pool not in ("text", "entities"):
            raise ValueError(f"prior_pool must be text|entities, got {self.prior_pool!r}")
        if self.prior_pool == "entities" and self.text_input != "spans":
            raise ValueError("prior_pool='entities' compares mention spans with labels: it needs text_input='spans'")
        if self.selection not in ("macro_f1", "pair_f0.5"):
            raise ValueError(f"selection must be macro_f1|pair_f0.5, got {self.selection!r}")
        if self.selection == "pair_f0.5" and self.task != "mre":
            raise ValueError("selection='pair_f0.5' scores relation pairs: it needs task='mre'")
        if self.label_text not in ("name", "description"):
            raise ValueError(f"label_text must be name|description, got {self.label_text!r}")
        if self.calibrate_on not in ("pooled", "validation-file"):
            raise ValueError(f"calibrate_on must be pooled|validation-file, got {self.calibrate_on!r}")
        if self.tuned_layers < 0:
            raise ValueError(f"tuned_layers must be >= 0, got {self.tuned_layers}")
        if self.tuned_layers and self.text_input != "spans":
            raise ValueError("tuned_layers reads each post encoded once up to the tuned layers: it needs text_input='spans'")
        if not 0.0 <= self.weight_mix <= 1.0:
            raise ValueError(f"weight_mix must be in [0, 1], got {self.weight_mix}")
        if self.weight_mix < 1.0 and self.similarity_prior <= 0:
            raise ValueError("weight_mix < 1 mixes the trained weights with the untrained ones, which are label "
                             "similarity only with similarity_prior > 0 (random heads otherwise)")
        if self.argument_input not in ("span", "surface", "both"):
            raise ValueError(f"argument_input must be span|surface|both, got {self.argument_input!r}")

    @property
    def num_spans(self) -> int:
        """Marker positions in h_e besides [CLS]: 1 for MET (<e>), 2 for MRE (<h>, <t>)."""
        return 1 if self.task == "met" else 2

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "MGVMoEConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown config fields {sorted(unknown)}")
        return cls(**data)

    def replace(self, **changes) -> "MGVMoEConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def for_pipeline(cls, task: str, **changes) -> "MGVMoEConfig":
        """The configuration of the checkpoints the ingestion pipeline runs (shipped and ``mmkg_train``):
        each post encoded once (``text_input="spans"``), ontology descriptions as label text, and the
        similarity prior, over the mention for types and the post for relations, and a 10x smaller step
        (1e-4: at 1e-3 the correction overfits the few seen classes within one epoch). Each choice was
        made on validation classes (docs/model.md).

        Relations also get the argument-type prior (weight 20, twice the description prior: validation
        pair-level micro-F0.5 of MNRE seed 0 went 16.7 -> 33.1 untrained, seed 1 15.5 -> 28.9) and early
        stopping on that pair-level F0.5 with ``None`` pairs (``selection="pair_f0.5"``): the metric of
        the graph the pipeline writes. The argument prior reads both the entity's span in the post and its
        words encoded alone (``argument_input="both"``: mean validation F0.5 of split seeds 0 and 1, untrained,
        30.7 span / 34.2 surface / 34.5 both, ``bench/zero_shot/argument_input.md``)."""
        base = dict(task=task, text_input="spans", label_text="description", similarity_prior=10.0,
                    prior_pool="entities" if task == "met" else "text", lr=1e-4)
        if task == "mre":
            base |= dict(argument_prior=20.0, argument_input="both", selection="pair_f0.5")
        return cls(**(base | changes))

    @classmethod
    def for_shipping(cls, task: str, **changes) -> "MGVMoEConfig":
        """``for_pipeline`` plus what the shipped checkpoint of ``task`` adds (``SHIPPED_CHANGES``): for types,
        MiniLM's top layer fine-tuned with the heads, the kept weights then mixed halfway back to the untrained
        label-similarity start (``weight_mix=0.5``, WiSE-FT's own value: the fine-tuned typer alone transferred
        to unseen types 3.6 points worse than the frozen one, docs/model.md); for relations, that layer fine-tuned on seen relations,
        ``None`` and reversed pairs, the threshold calibrated on the validation file's own pair mix (docs/model.md,
        *The top encoder layer fine-tuned*)."""
        return cls.for_pipeline(task, **(SHIPPED_CHANGES.get(task, {}) | changes))

    @classmethod
    def pipeline_candidates(cls, task: str, **changes) -> list["MGVMoEConfig"]:
        """The pipeline preset's candidate settings (``PIPELINE_CANDIDATES``), the preset's own first: what
        nested selection chooses among on a split's validation classes (``bench.zero_shot``, ``models.train
        --select``)."""
        return [cls.for_pipeline(task, **(candidate | changes)) for candidate in PIPELINE_CANDIDATES[task]]

    @classmethod
    def tiny(cls, task: str = "mre", **changes) -> "MGVMoEConfig":
        """A config for tests: tiny widths so a forward/backward runs in milliseconds on a CPU."""
        base = dict(
            task=task, text_hidden=32, image_hidden=24, hidden=32, num_experts=4, vmoe_dim=16, proj_dim=16,
            max_length=32, image_size=32, batch_size=8, epochs=2, patience=2, eval_batch_size=16,
        )
        base.update(changes)
        return cls(**base)


#: What nested selection chooses among for the pipeline preset, per task, on each split's own validation classes:
#: the settings an earlier harness fixed once from other folds' validation classes (docs/model.md). The first is
#: ``for_pipeline``'s own default; ties keep it.
PIPELINE_CANDIDATES: dict[str, tuple[dict, ...]] = {
    "met": tuple({"prior_pool": pool, "lr": lr} for pool in ("entities", "text") for lr in (1e-4, 1e-3)),
    "mre": tuple({"argument_input": arg, "lr": lr} for arg in ("both", "span") for lr in (1e-4, 1e-3)),
}

#: What each shipped checkpoint adds to ``for_pipeline``, chosen on data no reported number uses (docs/model.md): both
#: fine-tune the encoder's top layer; types with their heads trained (Twitter-2017 valid macro-F1 84.3 -> 88.6, WNUT-16
#: dev typed F1 48.3 -> 49.1 end to end), relations with the heads fixed at their prior start (validation pair F0.5
#: 37.1 -> 41.3).
SHIPPED_CHANGES: dict[str, dict] = {
    "met": dict(tuned_layers=1, tuned_lr=1e-4, weight_mix=0.5),
    "mre": dict(tuned_layers=1, lr=0.0, tuned_lr=1e-4, fit_weight=1.0, negatives_per_batch=16, reversed_per_batch=8,
                epochs=5, patience=2, calibrate_on="validation-file"),
}
