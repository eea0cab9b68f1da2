"""The readout lens against a hand-written logit lens (states taken with hooks, the model's own
final norm and head applied to them), on GPT-2, LLaMA and a ViT built from configs; a CNN and
an encoder–decoder say which streams and blocks the lens cannot take, and why."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import resprobe
from resprobe.lens import lens

tf = pytest.importorskip("transformers")


def _ids(*shape: int, vocab: int = 100) -> torch.Tensor:
    return torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(1))


def _run(model: nn.Module, inputs: resprobe.Inputs) -> dict[str, Any]:
    graph = resprobe.capture(model, inputs)
    return lens(model, graph, resprobe.find_blocks(graph), resprobe.example_data(inputs))


def _hand(final: torch.Tensor, decoded: list[torch.Tensor]) -> list[tuple[float, float]]:
    """(mean KL(p_final ‖ p_k), top-1 agreement) of each decoded state, over every position."""
    logp = torch.log_softmax(final, -1)
    out = []
    for d in decoded:
        logq = torch.log_softmax(d, -1)
        kl = (logp.exp() * (logp - logq)).sum(-1).mean().item()
        out.append((kl, (d.argmax(-1) == final.argmax(-1)).float().mean().item()))
    return out


def _states(model: nn.Module, after_attention: list[nn.Module], layers: list[nn.Module],
            run: Any) -> tuple[Any, list[torch.Tensor]]:
    """The stream after every block, in order: the input of each post-attention norm (the state
    after the attention add), then each layer's output (after the MLP add)."""
    got: dict[tuple[int, int], torch.Tensor] = {}
    handles = []
    for k, (norm, layer) in enumerate(zip(after_attention, layers)):
        handles.append(norm.register_forward_pre_hook(
            lambda m, a, k=k: got.__setitem__((k, 0), a[0].clone())))
        handles.append(layer.register_forward_hook(
            lambda m, a, o, k=k: got.__setitem__((k, 1), (o[0] if isinstance(o, tuple) else o).clone())))
    try:
        with torch.no_grad():
            out = run()
    finally:
        for h in handles:
            h.remove()
    return out, [got[key] for key in sorted(got)]


def _check(got: dict[str, Any], hand: list[tuple[float, float]]) -> None:
    numbers = [v for v in got["blocks"].values()]
    assert len(numbers) == len(hand)
    for v, (kl, agree) in zip(numbers, hand):
        assert v["kl_to_final"] == pytest.approx(kl, abs=1e-5)
        assert v["top1_agreement"] == pytest.approx(agree, abs=1e-6)
    assert numbers[-1]["kl_to_final"] == 0.0 and numbers[-1]["top1_agreement"] == 1.0


def test_gpt2_lens_is_the_hand_written_logit_lens() -> None:
    torch.manual_seed(0)
    model = tf.GPT2LMHeadModel(tf.GPT2Config(n_layer=3, n_embd=64, n_head=4, vocab_size=100)).eval()
    ids = _ids(2, 12)
    h = model.transformer.h
    out, states = _states(model, [b.ln_2 for b in h], list(h), lambda: model(input_ids=ids))
    with torch.no_grad():
        decoded = [model.lm_head(model.transformer.ln_f(s)) for s in states]
    got = _run(model, resprobe.Inputs((), {"input_ids": ids}))
    assert list(got["blocks"]) == [f"transformer.h.{k}.{p}" for k in range(3) for p in ("attn", "mlp")]
    _check(got, _hand(out.logits, decoded))
    stream = got["streams"][0]
    assert stream["blocks"] == list(got["blocks"]) and len(stream["log_prob_share"]) == 6
    assert sum(stream["log_prob_share"]) == pytest.approx(1.0)
    assert got["objective"]["name"] == "next-token"
    loss = torch.nn.functional.cross_entropy(decoded[0][:, :-1].reshape(-1, 100), ids[:, 1:].reshape(-1))
    assert got["blocks"]["transformer.h.0.attn"]["loss"] == pytest.approx(loss.item(), rel=1e-4)


def test_llama_lens_reads_through_rmsnorm() -> None:
    torch.manual_seed(0)
    config = tf.LlamaConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
                            intermediate_size=64, vocab_size=100, max_position_embeddings=32)
    model = tf.LlamaForCausalLM(config).eval()
    ids = _ids(2, 10)
    layers = model.model.layers
    out, states = _states(model, [lay.post_attention_layernorm for lay in layers], list(layers),
                          lambda: model(input_ids=ids))
    with torch.no_grad():
        decoded = [model.lm_head(model.model.norm(s)) for s in states]
    _check(_run(model, resprobe.Inputs((), {"input_ids": ids})), _hand(out.logits, decoded))


def test_vit_lens_pools_the_class_token() -> None:
    torch.manual_seed(0)
    config = tf.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                          num_attention_heads=4, intermediate_size=64, num_labels=10)
    model = tf.ViTForImageClassification(config).eval()
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    vit = model.vit
    layers = vit.layers if hasattr(vit, "layers") else vit.encoder.layer  # transformers 5 / 4
    out, states = _states(model, [lay.layernorm_after for lay in layers], list(layers),
                          lambda: model(pixel_values=x))
    with torch.no_grad():
        decoded = [model.classifier(model.vit.layernorm(s)[:, 0]) for s in states]
    _check(_run(model, resprobe.Inputs((), {"pixel_values": x})), _hand(out.logits, decoded))


def test_a_cnn_decodes_only_the_states_its_head_can_take() -> None:
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    got = _run(model, resprobe.Inputs((torch.randn(2, 3, 64, 64),)))
    measured = [n for n, v in got["blocks"].items() if "not_measured" not in v]
    assert measured and all(n.startswith("layer4.") for n in measured)
    skipped = {n: v["not_measured"] for n, v in got["blocks"].items() if "not_measured" in v}
    assert {n.split(".")[0] for n in skipped} == {"layer1", "layer2", "layer3"}
    assert all("other blocks" in why or "another shape" in why for why in skipped.values())
    assert got["blocks"][measured[-1]]["kl_to_final"] == 0.0


def test_an_encoder_decoder_decodes_its_decoder_stream_only() -> None:
    torch.manual_seed(0)
    config = tf.T5Config(vocab_size=100, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2,
                         num_heads=4, decoder_start_token_id=0)
    model = tf.T5ForConditionalGeneration(config).eval()
    got = _run(model, resprobe.Inputs((), {"input_ids": _ids(2, 8), "decoder_input_ids": _ids(2, 6)}))
    encoder = {n: v for n, v in got["blocks"].items() if n.startswith("encoder.")}
    decoder = {n: v for n, v in got["blocks"].items() if n.startswith("decoder.")}
    assert len(encoder) == 4 and all("through other blocks" in v["not_measured"] for v in encoder.values())
    assert len(decoder) == 6 and all("kl_to_final" in v for v in decoder.values())


def test_an_output_that_is_no_prediction_is_not_decoded() -> None:
    branch = nn.Sequential(nn.Linear(4, 4), nn.Tanh())
    model = nn.Sequential(nn.Linear(4, 4), _Residual(branch), nn.Linear(4, 1))
    inputs = resprobe.Inputs((torch.randn(5, 4),))
    graph = resprobe.capture(model, inputs)
    got = lens(model, graph, resprobe.find_blocks(graph), resprobe.example_data(inputs), objective="square")
    (why,) = {v["not_measured"] for v in got["blocks"].values()}
    assert "square" in why and "prediction" in why


class _Residual(nn.Module):
    def __init__(self, f: nn.Module) -> None:
        super().__init__()
        self.f = f

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.f(x)


def test_the_probe_reports_through_analyze_and_leaves_the_model_as_found() -> None:
    torch.manual_seed(0)
    model = tf.GPT2LMHeadModel(tf.GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=50)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = resprobe.analyze(model, {"input_ids": _ids(2, 8, vocab=50)}, probes=("lens",))
    result = report.result("lens")
    assert result is not None and result.summary["measured"] == 4
    last = report.blocks[-1].metrics.lens
    assert last is not None and last.kl_to_final == 0.0 and last.top1_agreement == 1.0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_text_data_with_an_attention_mask_is_decoded(tmp_path: Any) -> None:
    """Text --data adds an attention_mask input the example inputs lack: the lens captures the
    model again on such a batch and finds the same blocks by name."""
    loaded = resprobe.load("resprobe.examples:small_lm")
    assert loaded.inputs is not None
    text = tmp_path / "code.txt"
    text.write_text("def add(a, b):\n    return a + b\n\n" * 20, encoding="utf-8")
    data = resprobe.load_data(str(text), loaded.inputs, tokenizer=loaded.tokenizer, batch_size=4)
    report = resprobe.analyze(loaded, data=data, probes=("lens",))
    result = report.result("lens")
    assert result is not None and result.summary["measured"] == 8, result.notes
    assert all(b.metrics.lens is not None and b.metrics.lens.units for b in report.blocks)
