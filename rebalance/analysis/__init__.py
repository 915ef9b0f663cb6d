"""Offline analysis of a collection run: reading it (records, hidden files, pairing), scoring
layers, labelling steps, the steering vector with its LDA calibration, and the two stages the
scripts call (`stages.py`)."""
