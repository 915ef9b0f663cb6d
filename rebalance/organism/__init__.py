"""A model organism of overthinking and underthinking: the embedded SmolLM2-135M-Instruct fine-tuned
with LoRA on arithmetic traces (`recipe.py`) that re-check redundantly in one problem family and
skip a needed step in others, so that ReBalance has something to remove and something not
to break. A synthetic testbed in which the mechanism can be seen and regression-tested on a CPU;
it says nothing about real reasoning models.

  python -m rebalance.organism data [--out Data]   # Organism_Seen (80) and Organism_Heldout (48)
  python -m rebalance.organism train [--seed N]    # train and cache (or reuse) the organism
  python -m rebalance.organism compare DIR         # the demo's dynamic-against-static table and PNG
  python -m rebalance.organism study --seeds 0,1,2,3,4   # the pipeline on each seed, 200 held-out

`--model_name_or_path organism` resolves to the cached merged model and trains it on first use.
Training is deterministic: fixed seeds and a fixed number of steps, not a time limit.

Modules: `recipe.py` (problems and traces), `lora.py` (adapters), `train.py` (training and the
model cache), `sweep.py` (dynamic against static on one folder), `study.py` (the study over
training seeds), `__main__.py` (the command line).
"""
