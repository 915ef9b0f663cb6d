"""A model organism of overthinking: the embedded SmolLM2-135M-Instruct fine-tuned with LoRA on
arithmetic traces that re-check every product (`recipe.py`), so that ReBalance has
something to remove. A synthetic testbed in which the mechanism can be seen and regression-tested
on a CPU; it says nothing about real reasoning models.

  python -m rebalance.organism data [--out Data]   # Organism_Seen (80) and Organism_Heldout (48)
  python -m rebalance.organism train               # train and cache (or reuse) the organism
  python -m rebalance.organism compare DIR         # the demo's comparison table and PNG

`--model_name_or_path organism` resolves to the cached merged model and trains it on first use.
Training is deterministic: fixed seeds and a fixed number of steps, not a time limit.

Modules: `recipe.py` (problems and traces), `lora.py` (adapters), `train.py` (training and the
model cache), `sweep.py` (dynamic against static), `__main__.py` (the command line).
"""
