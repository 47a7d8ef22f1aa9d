"""kdface's speed and memory benchmarks (``python bench/run.py``); see bench/README.md."""
