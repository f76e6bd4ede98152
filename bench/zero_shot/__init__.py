"""Zero-shot MET / MRE benchmark: MG-VMoE against baselines and ablations (``python -m bench.zero_shot``)."""
