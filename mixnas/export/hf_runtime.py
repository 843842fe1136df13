"""The transformers face of an exported model: what `modeling_mixnas.py` adds to `model.py`'s code.

`--format hf` writes `modeling_mixnas.py` with the same code generator as `model.py` (the kernel
references, the primitives the architecture uses, the model, `build` and `generate`) and copies
the classes below after it, so the transformers model runs exactly the standalone model's code.

Decoding cache. transformers' `Cache` classes hold attention keys/values per layer (and, for its
own linear-attention models, conv/recurrent state tensors in its own layouts); mixnas's layers
each keep their own decode state (KV caches with a position, recurrent matrices, convolution
tails, Hyena's input history, a list per parallel branch), built and advanced by the layer's
`init_state`/`step`. Rather than translate every primitive's state into `Cache` layers (a second
copy of each primitive's state logic), the model keeps that state in `MixnasCache` and tells
`generate` that it brings its own cache, as transformers' recurrent models (RWKV, xLSTM) do:
`generate` passes the cache from step to step; the prompt is consumed through `step` one token at
a time (as the standalone `generate` does), then each new token costs one step. Without a cache
(`use_cache=False`) every step re-runs the parallel forward over the whole sequence.
"""

from __future__ import annotations

import torch
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from mixnas.export.hf_config import MixnasConfig
from mixnas.export.runtime import Config, build, build_mixer

# transformers 5 renamed `past_key_values` to `cache` (inputs and outputs alike)
CACHE_FIELD = (
    "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"
)


class MixnasCache:
    """The decode state of every layer (`model.init_state`, advanced by `model.step`) and the
    number of tokens it has consumed. Beam search reorders it along the batch."""

    is_compileable = False
    is_croppable = False

    def __init__(self):
        self.state = None
        self.seen_tokens = 0

    def get_seq_length(self, layer_idx=0):
        return self.seen_tokens

    def reorder_cache(self, beam_idx):
        self.state = _select_batch(self.state, beam_idx)


def _select_batch(state, index):
    """Rows `index` of every tensor in a nested state (all decode state tensors are batch-first)."""
    if isinstance(state, torch.Tensor):
        return state.index_select(0, index.to(state.device))
    if isinstance(state, dict):
        return {key: _select_batch(value, index) for key, value in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(_select_batch(value, index) for value in state)
    return state


def _check_padding(attention_mask):
    """mixnas models have no padding mask: they are causal, so right padding only changes the
    padded positions' own outputs, but left padding would change every real token's."""
    if attention_mask is None:
        return
    mask = attention_mask.bool()
    if (mask[:, 1:] & ~mask[:, :-1]).any():
        raise ValueError(
            "mixnas models take no left padding (tokens after a masked position); pad on the "
            "right (tokenizer.padding_side = 'right') or generate one prompt at a time"
        )


class MixnasForCausalLM(PreTrainedModel, GenerationMixin):
    """A mixnas architecture as a transformers causal LM: `self.model` is the standalone model
    (`build(Config)`), so state_dict keys are mixnas's own under `model.`."""

    config_class = MixnasConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    loss_type = "ForCausalLM"
    _no_split_modules = ["Block"]
    _is_stateful = True  # the cache cannot be rolled back (no assisted decoding)

    def __init__(self, config):
        super().__init__(config)
        self.model = build(Config(**config.architecture()))
        self.post_init()

    def _init_weights(self, module):
        """mixnas's modules initialise their parameters when built and a checkpoint overwrites
        them. Loading builds the model on the meta device, though, so the constants some mixers
        compute in __init__ (non-persistent buffers, e.g. retention's decays) are recomputed here
        from a fresh build of the mixer that holds them."""
        names = getattr(module, "_non_persistent_buffers_set", ())
        buffers = [name for name in sorted(names) if getattr(module, name, None) is not None]
        if not buffers or getattr(module, buffers[0]).is_meta:
            return
        path = next(name for name, m in self.named_modules() if m is module).split(".")
        if path[:2] != ["model", "blocks"] or len(path) < 4:
            raise RuntimeError(f"cannot recompute the buffers of {'.'.join(path)}")
        layer = self.config.layers[int(path[2])][path[3]]
        with torch.random.fork_rng(devices=[]), torch.device("cpu"), torch.no_grad():
            fresh = build_mixer(layer, self.config.d_model).get_submodule(".".join(path[4:]))
            for name in buffers:
                getattr(module, name).copy_(getattr(fresh, name))

    @classmethod
    def _supports_default_dynamic_cache(cls):
        return False  # the model brings its own cache (MixnasCache), see the module docstring

    def get_input_embeddings(self):
        return self.model.embed

    def set_input_embeddings(self, value):
        self.model.embed = value

    def get_output_embeddings(self):
        return self.model.lm_head  # None with tied embeddings: the head reads model.embed

    def set_output_embeddings(self, value):
        self.model.lm_head = value

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        labels=None,
        use_cache=None,
        return_dict=None,
        inputs_embeds=None,
        **kwargs,
    ):
        """input_ids (B, T) -> logits (B, T, vocab_size). With a `MixnasCache` (as `cache`, or
        `past_key_values` before transformers 5) the tokens continue the cached state one step
        at a time; otherwise the parallel forward runs. `labels` (B, T) add the shifted
        cross-entropy (-100 ignored) plus router_aux_loss_coef times the MoE balancing loss."""
        if inputs_embeds is not None:
            raise ValueError("mixnas models take input_ids, not inputs_embeds")
        _check_padding(attention_mask)
        cache = kwargs.pop("cache", None)
        cache = kwargs.pop("past_key_values", None) if cache is None else cache
        if cache is None:
            logits = self.model(input_ids)
        else:
            logits = self._continue(input_ids, cache)
        loss = None
        if labels is not None:
            loss = self.loss_function(
                logits, labels, self.config.vocab_size,
                num_items_in_batch=kwargs.get("num_items_in_batch"),
            )
            loss = loss + self.config.router_aux_loss_coef * self.model.aux_loss()
        output = CausalLMOutputWithPast(loss=loss, logits=logits, **{CACHE_FIELD: cache})
        return output if return_dict is not False else output.to_tuple()

    def _continue(self, input_ids, cache):
        """Feed input_ids (B, T) through the layers' step form from the cached state."""
        if cache.state is None:
            cache.state = self.model.init_state(input_ids.shape[0])
        logits = []
        for t in range(input_ids.shape[1]):
            step_logits, cache.state = self.model.step(input_ids[:, t], cache.state)
            logits.append(step_logits)
        cache.seen_tokens += input_ids.shape[1]
        return torch.stack(logits, dim=1)

    def prepare_inputs_for_generation(
        self, input_ids, attention_mask=None, use_cache=True, **kwargs
    ):
        """Start a MixnasCache on the first call; later calls pass only the tokens it has not
        seen yet. Without a cache every call gets the whole sequence."""
        if kwargs.get("inputs_embeds") is not None:
            raise ValueError("mixnas models generate from input_ids, not inputs_embeds")
        cache = kwargs.get("cache")
        cache = kwargs.get("past_key_values") if cache is None else cache
        if use_cache and cache is None:
            cache = MixnasCache()
        if cache is not None:
            input_ids = input_ids[:, cache.seen_tokens :]
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "use_cache": use_cache}
        if cache is not None:
            inputs[CACHE_FIELD] = cache
        return inputs
