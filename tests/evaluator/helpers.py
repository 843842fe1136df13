"""Tiny real architectures and task settings that train in well under a second on one core."""

from mixnas.search_space import Architecture, Layer, Mixer


def tiny_arch(token="attention", d_model=16, layers=1, **params):
    mixer = Mixer(token, {"heads": 2, **params} if token == "attention" else params)
    return Architecture(d_model, [Layer(mixer, Mixer("swiglu", {}))] * layers)


# memorization of an 8-entry map from 8-token sequences: learnable in a few dozen steps
EASY = {"name": "memorization", "vocab_size": 16, "seq_len": 8, "num_train": 64, "num_test": 64}
QUICK_TRAIN = {"lr": 1e-2, "batch_size": 16, "eval_batch_size": 64}
NO_LATENCY = {"latency": False, "context_length": 32}
