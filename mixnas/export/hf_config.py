"""The transformers config class of an exported model: what `configuration_mixnas.py` holds.

`--format hf` copies `MixnasConfig` verbatim into the exported directory (as `model.py`'s code is
copied from mixnas), so `AutoConfig.from_pretrained(DIR, trust_remote_code=True)` reads the same
architecture fields that `model.py`'s `Config` reads: the canonical architecture plus the
vocabulary size. This module imports transformers, so only `--format hf` (after checking that
transformers is installed) ever imports it.
"""

from __future__ import annotations

from transformers import PretrainedConfig


class MixnasConfig(PretrainedConfig):
    """A mixnas architecture as a transformers config (config.json of a `--format hf` export).

    The architecture fields are those of `model.py`'s `Config`: `vocab_size`, `d_model`, `layers`
    ([{"token_mixer": {"type", "params"}, "channel_mixer": {...}}, ...]), `norm`,
    `tie_embeddings` and `name`. `router_aux_loss_coef` weighs the MoE load-balancing loss added
    to the language-modelling loss when `labels` are given (mixnas's trainer used the same
    weight). Tied embeddings are part of the model's structure (the LM head reads the embedding
    matrix), so transformers' own weight tying stays off.
    """

    model_type = "mixnas"
    attribute_map = {"hidden_size": "d_model"}

    def __init__(
        self,
        vocab_size=256,
        d_model=64,
        layers=None,
        norm="rms",
        tie_embeddings=True,
        name=None,
        router_aux_loss_coef=0.01,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.layers = [] if layers is None else layers
        self.norm = norm
        self.tie_embeddings = tie_embeddings
        self.name = name
        self.router_aux_loss_coef = router_aux_loss_coef
        kwargs["tie_word_embeddings"] = False
        super().__init__(**kwargs)

    @property
    def num_hidden_layers(self):
        return len(self.layers)

    def architecture(self):
        """The fields of `Config` (the standalone model's config) as a dict."""
        return {
            "vocab_size": self.vocab_size,
            "d_model": self.d_model,
            "layers": self.layers,
            "norm": self.norm,
            "tie_embeddings": self.tie_embeddings,
            "name": self.name,
        }
