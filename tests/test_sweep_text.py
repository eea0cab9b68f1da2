"""The wide sweep over transformers, diffusers, open_clip and segment_anything: tiny configs with
random weights, and residual-add counts derived by reading each model's source for that config.

Counting rules (docs/concepts.md): a residual add is a join ``x + f(x)`` where ``x`` is the block
input (or its projection) and ``f`` holds parameters; LayerScale, gated and post-norm joins count.
Not counted: bias adds, ``x + pos_emb``, ``scores + mask``/position biases, RoPE, two parallel
branches added to each other (``attn(h) + mlp(h)``: the block is the one ``x + [...]`` join),
conditioning adds (``h + temb_proj(temb)``, AdaLN shift/scale) and positional re-adds
(``queries + query_pe``). A concat skip is a decoder ``cat`` with an earlier encoder feature.
"""

from __future__ import annotations

from typing import Any

import pytest
import sweep
import torch
from sweep import Case

pytestmark = [pytest.mark.zoo, pytest.mark.sweep]

V = 99  # vocabulary of every text model; ids are drawn below it
B, T = 2, 8  # batch and sequence length of every text input


def _tf() -> Any:
    return pytest.importorskip("transformers")


def _ids(n: int = T) -> torch.Tensor:
    return torch.randint(0, V, (B, n))


def _hf(model: str, config: str, **cfg: Any) -> torch.nn.Module:
    tf = _tf()
    return getattr(tf, model)(getattr(tf, config)(**cfg))


def _lm(model: str, config: str, **cfg: Any) -> tuple[torch.nn.Module, Any]:
    return _hf(model, config, vocab_size=V, **cfg), {"input_ids": _ids()}


def _seq2seq(model: str, config: str, **cfg: Any) -> tuple[torch.nn.Module, Any]:
    return _hf(model, config, vocab_size=V, **cfg), {"input_ids": _ids(), "decoder_input_ids": _ids(5)}


def _pixels(size: int = 32) -> dict[str, torch.Tensor]:
    return {"pixel_values": torch.randn(B, 3, size, size)}


LLAMA_LIKE = dict(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=64, max_position_embeddings=32)
BERT_LIKE = dict(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, intermediate_size=64,
                 max_position_embeddings=32)
BART_LIKE = dict(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                 decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
                 max_position_embeddings=32)
VIT_LIKE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                image_size=32, patch_size=8)


# ----------------------------------------------------------------------------------- decoders


DECODERS = [
    Case("gpt2", lambda: _lm("GPT2LMHeadModel", "GPT2Config", n_layer=2, n_embd=32, n_head=4, n_positions=32),
         4, 0, 0, "GPT2Block: x + attn(ln_1 x), x + mlp(ln_2 x); 2 layers x 2 = 4"),
    Case("gptj", lambda: _lm("GPTJForCausalLM", "GPTJConfig", n_layer=2, n_embd=32, n_head=4, rotary_dim=4,
                             n_positions=32),
         2, 0, 0, "GPTJBlock: attn(ln_1 x) + mlp(ln_1 x) + x, one parallel join per layer; 2 layers = 2"),
    Case("gpt_neox", lambda: _lm("GPTNeoXForCausalLM", "GPTNeoXConfig", num_hidden_layers=2, hidden_size=32,
                                 num_attention_heads=4, intermediate_size=64, max_position_embeddings=32,
                                 use_parallel_residual=True),
         2, 0, 0, "GPTNeoXLayer use_parallel_residual: mlp(ln2 x) + attn(ln1 x) + x, 1 join/layer; 2 layers"),
    Case("llama", lambda: _lm("LlamaForCausalLM", "LlamaConfig", **LLAMA_LIKE),
         4, 0, 0, "LlamaDecoderLayer: residual + self_attn(norm x), residual + mlp(norm x); 2 x 2 = 4"),
    Case("mistral", lambda: _lm("MistralForCausalLM", "MistralConfig", **LLAMA_LIKE),
         4, 0, 0, "MistralDecoderLayer: pre-norm attn and mlp residuals; 2 x 2 = 4"),
    Case("mixtral", lambda: _lm("MixtralForCausalLM", "MixtralConfig", **LLAMA_LIKE, num_local_experts=4,
                                num_experts_per_tok=2),
         4, 0, 0, "MixtralDecoderLayer: residual + attn, residual + sparse MoE (experts index_add_ into "
                  "zeros, no skip inside); 2 x 2 = 4"),
    Case("qwen2", lambda: _lm("Qwen2ForCausalLM", "Qwen2Config", **LLAMA_LIKE),
         4, 0, 0, "Qwen2DecoderLayer: pre-norm attn and mlp residuals; 2 x 2 = 4"),
    Case("qwen3", lambda: _lm("Qwen3ForCausalLM", "Qwen3Config", **LLAMA_LIKE, head_dim=8),
         4, 0, 0, "Qwen3DecoderLayer: pre-norm attn (q_norm/k_norm then RoPE, no join) and mlp "
                  "residuals; 2 x 2"),
    Case("olmo2", lambda: _lm("Olmo2ForCausalLM", "Olmo2Config", **LLAMA_LIKE),
         4, 0, 0, "Olmo2DecoderLayer: residual + post_attention_layernorm(attn x), residual + "
                  "post_feedforward_layernorm(mlp x); q/k norm + RoPE no join; 2 x 2"),
    Case("gemma", lambda: _lm("GemmaForCausalLM", "GemmaConfig", **{**LLAMA_LIKE, "num_key_value_heads": 1},
                              head_dim=8),
         4, 0, 0, "GemmaDecoderLayer: pre-norm attn and mlp residuals (embeds * sqrt(d) constant); 2 x 2"),
    Case("gemma2", lambda: _lm("Gemma2ForCausalLM", "Gemma2Config", **LLAMA_LIKE, head_dim=8,
                               query_pre_attn_scalar=8, sliding_window=4),
         4, 0, 0, "Gemma2DecoderLayer: residual + post_attention_layernorm(attn), residual + "
                  "post_feedforward_layernorm(mlp); 2 x 2"),
    Case("phi", lambda: _lm("PhiForCausalLM", "PhiConfig", num_hidden_layers=2, hidden_size=32,
                            num_attention_heads=4, intermediate_size=64, max_position_embeddings=32),
         2, 0, 0, "PhiDecoderLayer: attn(ln x) + mlp(ln x) + x, one parallel join per layer; 2"),
    Case("phi3", lambda: _lm("Phi3ForCausalLM", "Phi3Config", **LLAMA_LIKE, pad_token_id=0),
         4, 0, 0, "Phi3DecoderLayer: residual + attn, residual + mlp (fused gate_up chunk); 2 x 2"),
    Case("falcon", lambda: _lm("FalconForCausalLM", "FalconConfig", num_hidden_layers=2, hidden_size=32,
                               num_attention_heads=4),
         2, 0, 0, "FalconDecoderLayer parallel_attn: mlp_output += attn_output; dropout_add(mlp, residual): "
                  "1 join/layer; 2"),
    Case("bloom", lambda: _lm("BloomForCausalLM", "BloomConfig", n_layer=2, hidden_size=32, n_head=4),
         4, 0, 0, "BloomBlock: dropout_add(dense(attn), residual) in BloomAttention and BloomMLP; 2 x 2 "
                  "(alibi.baddbmm is a bias)"),
    Case("opt", lambda: _lm("OPTForCausalLM", "OPTConfig", num_hidden_layers=2, hidden_size=32,
                            num_attention_heads=4, ffn_dim=64, max_position_embeddings=32,
                            word_embed_proj_dim=32),
         4, 0, 0, "OPTDecoderLayer do_layer_norm_before: residual + attn, (residual + fc2(...)).view on "
                  "flattened tokens; 2 x 2"),
    Case("cohere", lambda: _lm("CohereForCausalLM", "CohereConfig", **LLAMA_LIKE),
         2, 0, 0, "CohereDecoderLayer: (residual + attn(ln x)) + mlp(ln x): the first add is the join, the "
                  "second adds a parallel branch; 1/layer, 2"),
    Case("stablelm", lambda: _lm("StableLmForCausalLM", "StableLmConfig", **LLAMA_LIKE),
         4, 0, 0, "StableLmDecoderLayer (use_parallel_residual=False): residual + attn, residual + mlp; "
                  "2 x 2"),
    Case("codegen", lambda: _lm("CodeGenForCausalLM", "CodeGenConfig", n_layer=2, n_embd=32, n_head=4,
                                rotary_dim=4, n_positions=32, n_ctx=32),
         2, 0, 0, "CodeGenBlock: attn(ln_1 x) + mlp(ln_1 x) + residual, one parallel join/layer; 2"),
    Case("gpt_bigcode", lambda: _lm("GPTBigCodeForCausalLM", "GPTBigCodeConfig", n_layer=2, n_embd=32,
                                    n_head=4, n_positions=32),
         4, 0, 0, "GPTBigCodeBlock: attn_output + residual, residual + mlp; 2 x 2"),
    Case("mamba", lambda: _lm("MambaForCausalLM", "MambaConfig", num_hidden_layers=2, hidden_size=32,
                              state_size=8, expand=2, conv_kernel=4),
         4, 0, 0, "MambaBlock residual + mixer(norm x), and in mamba_selective_scan the D skip "
                  "scan_output + x * D (x_proj(x) starts the SSM branch); 2 x 2"),
    Case("rwkv", lambda: _lm("RwkvForCausalLM", "RwkvConfig", num_hidden_layers=2, hidden_size=32,
                             attention_hidden_size=32, intermediate_size=64, context_length=16,
                             rescale_every=0),
         4, 0, 0, "RwkvBlock: hidden + attention(ln1), hidden + feed_forward(ln2); token-shift lerps "
                  "x*mu + shift(x)*(1-mu) and the WKV recurrence are not joins; 2 x 2",
         known="weight-scaled interpolation: RWKV token shift x*mu + shift(x)*(1-mu) is taken as a scaled "
               "join (the elementwise scale by 1-mu counts as the branch's weighted op): 3 + 2 lerps in "
               "layer 0 (layer 1's shift reads the recurrent state, so not there), 9 vs 4"),
    # others present in this transformers
    Case("gpt_neo", lambda: _lm("GPTNeoForCausalLM", "GPTNeoConfig", num_layers=2, hidden_size=32,
                                num_heads=4, attention_types=[[["global", "local"], 1]], window_size=4,
                                max_position_embeddings=32),
         4, 0, 0, "GPTNeoBlock: attn_output + residual, residual + mlp; global+local layers, 2 x 2"),
    Case("xglm", lambda: _lm("XGLMForCausalLM", "XGLMConfig", num_layers=2, d_model=32, attention_heads=4,
                             ffn_dim=64, max_position_embeddings=32),
         4, 0, 0, "XGLMDecoderLayer without encoder: residual + self_attn, residual + fc2; 2 x 2"),
    Case("biogpt", lambda: _lm("BioGptForCausalLM", "BioGptConfig", **BERT_LIKE),
         4, 0, 0, "BioGptDecoderLayer: residual + self_attn, residual + fc2; 2 x 2"),
    Case("granite", lambda: _lm("GraniteForCausalLM", "GraniteConfig", **LLAMA_LIKE, residual_multiplier=0.5),
         4, 0, 0, "GraniteDecoderLayer: residual + attn * residual_multiplier (scaled), same for mlp; 2 x 2"),
    Case("starcoder2", lambda: _lm("Starcoder2ForCausalLM", "Starcoder2Config", **LLAMA_LIKE),
         4, 0, 0, "Starcoder2DecoderLayer: pre-norm attn and mlp residuals; 2 x 2"),
    Case("persimmon", lambda: _lm("PersimmonForCausalLM", "PersimmonConfig", num_hidden_layers=2,
                                  hidden_size=32, num_attention_heads=4, intermediate_size=64,
                                  max_position_embeddings=32),
         4, 0, 0, "PersimmonDecoderLayer: residual + attn (qk_layernorm, partial RoPE), mlp + residual; "
                  "2 x 2"),
    Case("gemma3", lambda: _lm("Gemma3ForCausalLM", "Gemma3TextConfig", **LLAMA_LIKE, head_dim=8,
                               query_pre_attn_scalar=8, sliding_window=4),
         4, 0, 0, "Gemma3DecoderLayer: residual + post_attention_layernorm(attn), residual + "
                  "post_feedforward_layernorm(mlp); q/k norm + RoPE no join; 2 x 2"),
    Case("qwen2_moe", lambda: _lm("Qwen2MoeForCausalLM", "Qwen2MoeConfig", **LLAMA_LIKE, num_experts=4,
                                  num_experts_per_tok=2, moe_intermediate_size=32,
                                  shared_expert_intermediate_size=32),
         4, 0, 0, "Qwen2MoeDecoderLayer: residual + attn, residual + moe; experts + sigmoid-gated shared "
                  "expert is two branches, not a skip; 2 x 2"),
    Case("olmoe", lambda: _lm("OlmoeForCausalLM", "OlmoeConfig", **LLAMA_LIKE, num_experts=4,
                              num_experts_per_tok=2),
         4, 0, 0, "OlmoeDecoderLayer: residual + attn (q/k norm), residual + sparse MoE; 2 x 2"),
    Case("nemotron", lambda: _lm("NemotronForCausalLM", "NemotronConfig", **LLAMA_LIKE, head_dim=8),
         4, 0, 0, "NemotronDecoderLayer: pre-norm (LayerNorm1P) attn and mlp residuals; 2 x 2"),
    Case("falcon_mamba", lambda: _lm("FalconMambaForCausalLM", "FalconMambaConfig", num_hidden_layers=2,
                                     hidden_size=32, state_size=8, expand=2, conv_kernel=4),
         4, 0, 0, "FalconMambaBlock residual + mixer(norm x), D skip scan_output + x * D; 2 x 2"),
]


# ----------------------------------------------------------------------------------- encoders


ENCODERS = [
    Case("bert", lambda: _lm("BertModel", "BertConfig", **BERT_LIKE),
         4, 0, 0, "BertSelfOutput/BertOutput: LayerNorm(dense(h) + input) post-norm; 2 x 2"),
    Case("roberta", lambda: _lm("RobertaModel", "RobertaConfig",
                                **{**BERT_LIKE, "max_position_embeddings": 40}),
         4, 0, 0, "RobertaSelfOutput/RobertaOutput post-norm residuals (positions from input_ids are an "
                  "embedding, not a branch); 2 x 2"),
    Case("albert", lambda: _lm("AlbertModel", "AlbertConfig", **BERT_LIKE, embedding_size=16),
         4, 0, 0, "one shared AlbertLayer run num_hidden_layers=2 times: LayerNorm(x + dense(attn)), "
                  "LayerNorm(ffn + attention_output); 2 x 2"),
    Case("deberta_v2", lambda: _lm("DebertaV2Model", "DebertaV2Config", **BERT_LIKE, relative_attention=True,
                                   pos_att_type=["p2c", "c2p"], position_biased_input=False,
                                   position_buckets=8, norm_rel_ebd="layer_norm", share_att_key=True),
         4, 0, 0, "DebertaV2SelfOutput/DebertaV2Output LayerNorm(dense + input); c2p/p2c score adds are "
                  "attention biases; 2 x 2"),
    Case("distilbert", lambda: _lm("DistilBertModel", "DistilBertConfig", n_layers=2, dim=32, n_heads=4,
                                   hidden_dim=64, max_position_embeddings=32),
         4, 0, 0, "TransformerBlock: sa_layer_norm(attn + x), output_layer_norm(ffn + sa); 2 x 2"),
    Case("electra", lambda: _lm("ElectraModel", "ElectraConfig", **BERT_LIKE, embedding_size=16),
         4, 0, 0, "ElectraSelfOutput/ElectraOutput post-norm residuals (embeddings_project is no skip); "
                  "2 x 2"),
    Case("xlm_roberta", lambda: _lm("XLMRobertaModel", "XLMRobertaConfig",
                                    **{**BERT_LIKE, "max_position_embeddings": 40}),
         4, 0, 0, "XLMRobertaSelfOutput/XLMRobertaOutput post-norm residuals; 2 x 2"),
    Case("mpnet", lambda: _lm("MPNetModel", "MPNetConfig", **{**BERT_LIKE, "max_position_embeddings": 40}),
         4, 0, 0, "MPNetAttention LayerNorm(attn + x), MPNetOutput LayerNorm(dense + input); relative "
                  "position bias is static; 2 x 2"),
    Case("modernbert", lambda: _lm("ModernBertModel", "ModernBertConfig", num_hidden_layers=2, hidden_size=32,
                                   num_attention_heads=4, intermediate_size=64, max_position_embeddings=32,
                                   layer_types=["full_attention", "sliding_attention"], local_attention=4,
                                   pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=1,
                                   sep_token_id=2),
         4, 0, 0, "ModernBertEncoderLayer: h + attn(attn_norm h) (Identity norm in layer 0), "
                  "h + mlp(mlp_norm h); 2 x 2"),
    Case("esm", lambda: _lm("EsmModel", "EsmConfig", **{**BERT_LIKE, "max_position_embeddings": 40},
                            pad_token_id=1, mask_token_id=2),
         4, 0, 0, "EsmSelfOutput/EsmOutput: dense(h) + input_tensor with pre-LayerNorm; 2 x 2"),
    Case("convbert", lambda: _lm("ConvBertModel", "ConvBertConfig", **BERT_LIKE, embedding_size=32),
         4, 0, 0, "ConvBertSelfOutput/ConvBertOutput LayerNorm(h + input); span conv (x + bias) is a bias; "
                  "2 x 2"),
    Case("squeezebert", lambda: _lm("SqueezeBertModel", "SqueezeBertConfig", **BERT_LIKE, embedding_size=32,
                                    q_groups=1, k_groups=1, v_groups=1, post_attention_groups=1,
                                    intermediate_groups=1, output_groups=1),
         4, 0, 0, "ConvDropoutLayerNorm: conv1d(h) + input_tensor then LayerNorm, after attention and "
                  "after the FFN; 2 x 2"),
    Case("xlnet", lambda: _lm("XLNetModel", "XLNetConfig", n_layer=2, d_model=32, n_head=4, d_inner=64),
         4, 0, 0, "XLNetRelativeAttention.post_attention attn_out + h, XLNetFeedForward "
                  "layer_norm(output + inp); q + r_w_bias etc. are biases; 2 x 2"),
]


# --------------------------------------------------------------------------- encoder-decoders


SEQ2SEQ = [
    Case("t5", lambda: _seq2seq("T5ForConditionalGeneration", "T5Config", num_layers=2, num_decoder_layers=2,
                                d_model=32, d_ff=64, num_heads=4, d_kv=8),
         10, 0, 0, "T5LayerSelfAttention/T5LayerCrossAttention/T5LayerFF x + dropout(f(norm x)); "
                   "enc 2x2 + dec 2x3 = 10"),
    Case("bart", lambda: _seq2seq("BartForConditionalGeneration", "BartConfig", **BART_LIKE),
         10, 0, 0, "post-norm BartEncoderLayer (attn, fc) + BartDecoderLayer (self, cross, fc); 2x2 + 2x3"),
    Case("mbart", lambda: _seq2seq("MBartForConditionalGeneration", "MBartConfig", **BART_LIKE),
         10, 0, 0, "pre-norm MBartEncoderLayer 2 residuals, MBartDecoderLayer 3; 2x2 + 2x3 = 10"),
    Case("pegasus", lambda: _seq2seq("PegasusForConditionalGeneration", "PegasusConfig", **BART_LIKE),
         10, 0, 0, "pre-norm PegasusEncoderLayer 2, PegasusDecoderLayer 3 (sinusoidal positions static); 10"),
    Case("marian", lambda: _seq2seq("MarianMTModel", "MarianConfig", **BART_LIKE, pad_token_id=0,
                                    decoder_start_token_id=0),
         10, 0, 0, "post-norm MarianEncoderLayer 2, MarianDecoderLayer 3; 2x2 + 2x3 = 10"),
    Case("whisper", lambda: (_hf("WhisperForConditionalGeneration", "WhisperConfig", vocab_size=V, d_model=32,
                                 encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                                 decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
                                 num_mel_bins=8, max_source_positions=16, max_target_positions=16,
                                 pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1),
                             {"input_features": torch.randn(B, 8, 32), "decoder_input_ids": _ids(5)}),
         10, 0, 0, "WhisperEncoderLayer pre-norm 2 (conv stem + embed_positions static), "
                   "WhisperDecoderLayer 3; 2x2 + 2x3"),
    Case("umt5", lambda: _seq2seq("UMT5ForConditionalGeneration", "UMT5Config", num_layers=2,
                                  num_decoder_layers=2, d_model=32, d_ff=64, num_heads=4, d_kv=8),
         10, 0, 0, "UMT5LayerSelfAttention/CrossAttention/FF x + dropout(f(norm x)) (per-layer position "
                   "bias); 2x2 + 2x3"),
    Case("m2m_100", lambda: _seq2seq("M2M100ForConditionalGeneration", "M2M100Config", **BART_LIKE),
         10, 0, 0, "pre-norm M2M100EncoderLayer 2, M2M100DecoderLayer 3 (sinusoidal positions from ids are "
                   "an embedding); 10"),
    Case("blenderbot", lambda: _seq2seq("BlenderbotForConditionalGeneration", "BlenderbotConfig",
                                        **BART_LIKE),
         10, 0, 0, "pre-norm BlenderbotEncoderLayer 2, BlenderbotDecoderLayer 3; 2x2 + 2x3"),
    Case("plbart", lambda: _seq2seq("PLBartForConditionalGeneration", "PLBartConfig", **BART_LIKE),
         10, 0, 0, "post-norm PLBartEncoderLayer 2, PLBartDecoderLayer 3; 2x2 + 2x3"),
]


# ------------------------------------------------------------------------------------- vision


VISION = [
    Case("vit", lambda: (_hf("ViTModel", "ViTConfig", **VIT_LIKE), _pixels()),
         4, 0, 0, "ViTLayer: attn(layernorm_before) + residual, mlp(layernorm_after) + residual; 2 x 2"),
    Case("deit", lambda: (_hf("DeiTForImageClassificationWithTeacher", "DeiTConfig", **VIT_LIKE,
                              num_labels=5),
                          _pixels()),
         4, 0, 0, "DeiTLayer pre-norm 2/layer; (cls_head + distillation_head) / 2 is two heads, no skip; "
                  "2 x 2"),
    Case("beit", lambda: (_hf("BeitModel", "BeitConfig", **VIT_LIKE, use_relative_position_bias=True,
                              layer_scale_init_value=0.1, use_mean_pooling=True), _pixels()),
         4, 0, 0, "BeitLayer: lambda_1 * attn + residual, lambda_2 * mlp + residual (scaled); relative "
                  "position bias static; 2 x 2"),
    Case("swin", lambda: (_hf("SwinModel", "SwinConfig", image_size=32, patch_size=4, embed_dim=16,
                              depths=[2, 1], num_heads=[2, 2], window_size=4), _pixels()),
         6, 0, 0, "SwinLayer: shortcut + window attn, residual + mlp; depths 2+1 = 3 layers x 2 (patch "
                  "merging cat of strided slices is no skip)"),
    Case("convnext", lambda: (_hf("ConvNextModel", "ConvNextConfig", num_stages=2, hidden_sizes=[16, 32],
                                  depths=[2, 1]), _pixels()),
         3, 0, 0, "ConvNextLayer: residual + layer_scale * pwconv2(...dwconv x); depths 2+1 = 3 (stage "
                  "downsampling has no skip)"),
    Case("resnet_basic", lambda: (_hf("ResNetModel", "ResNetConfig", embedding_size=16, hidden_sizes=[16, 32],
                                      depths=[2, 1], layer_type="basic"), _pixels()),
         3, 1, 0, "ResNetBasicLayer hidden += shortcut(x); stage0 16->16 identity x2, stage1 16->32 stride 2 "
                  "ResNetShortCut conv1x1+BN"),
    Case("resnet_bottleneck", lambda: (_hf("ResNetModel", "ResNetConfig", embedding_size=16,
                                           hidden_sizes=[32, 64], depths=[2, 1], layer_type="bottleneck"),
                                       _pixels()),
         3, 2, 0, "ResNetBottleNeckLayer; stage0 16->32 projection then identity, stage1 32->64 stride 2 "
                  "projection"),
    Case("segformer", lambda: (_hf("SegformerForSemanticSegmentation", "SegformerConfig",
                                   num_encoder_blocks=2,
                                   depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[16, 32], patch_sizes=[7, 3],
                                   strides=[4, 2], num_attention_heads=[1, 2], mlp_ratios=[2, 2],
                                   decoder_hidden_size=32, num_labels=3), _pixels()),
         4, 0, 0, "SegformerLayer: attn + residual, mix-ffn + residual; 2 stages x 1 layer x 2; decode head "
                  "cat of per-stage MLP outputs is no skip"),
    Case("dinov2", lambda: (_hf("Dinov2Model", "Dinov2Config", hidden_size=32, num_hidden_layers=2,
                                num_attention_heads=4, mlp_ratio=2, image_size=32, patch_size=8), _pixels()),
         4, 0, 0, "Dinov2Layer: layer_scale1(attn) + residual, layer_scale2(mlp) + residual; 2 x 2"),
    Case("clip", lambda: (_hf("CLIPModel", "CLIPConfig", projection_dim=16,
                              text_config=dict(vocab_size=V, hidden_size=32, intermediate_size=64,
                                               num_hidden_layers=2, num_attention_heads=4,
                                               max_position_embeddings=16),
                              vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                                 num_attention_heads=4, image_size=32, patch_size=8)),
                          {"input_ids": _ids(), **_pixels()}),
         8, 0, 0, "CLIPEncoderLayer pre-norm 2/layer; text 2 layers + vision 2 layers = 8"),
    Case("siglip", lambda: (_hf("SiglipModel", "SiglipConfig",
                                text_config=dict(vocab_size=V, hidden_size=32, intermediate_size=64,
                                                 num_hidden_layers=2, num_attention_heads=4,
                                                 max_position_embeddings=16),
                                vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                                   num_attention_heads=4, image_size=32, patch_size=8)),
                            {"input_ids": _ids(), **_pixels()}),
         9, 0, 0, "SiglipEncoderLayer 2/layer x (2 text + 2 vision) + MAP head residual + mlp(layernorm) "
                  "after the probe attention = 9"),
    Case("regnet", lambda: (_hf("RegNetModel", "RegNetConfig", embedding_size=8, hidden_sizes=[8, 16],
                                depths=[1, 2], groups_width=8, layer_type="y"), _pixels()),
         3, 2, 0, "RegNetYLayer hidden += shortcut(x) (SE product inside the branch); stage0 8->8 stride 2 "
                  "(downsample_in_first_stage) projection, stage1 8->16 projection then identity"),
    Case("bit", lambda: (_hf("BitModel", "BitConfig", embedding_size=8, hidden_sizes=[16, 32], depths=[1, 1],
                             layer_type="preactivation", global_padding="SAME", num_groups=4), _pixels()),
         2, 2, 0, "BitPreActivationBottleneckLayer: conv3(...) + shortcut, downsample (weight-standardised "
                  "conv1x1) in each stage's first layer; 2 stages x 1"),
    Case("pvt_v2", lambda: (_hf("PvtV2Model", "PvtV2Config", num_encoder_blocks=2, depths=[1, 1],
                                sr_ratios=[2, 1], hidden_sizes=[16, 32], patch_sizes=[7, 3], strides=[4, 2],
                                num_attention_heads=[1, 2], mlp_ratios=[2, 2]), _pixels()),
         4, 0, 0, "PvtV2BlockLayer: attention_output + hidden, mlp_output + hidden; 2 stages x 1 x 2"),
    Case("focalnet", lambda: (_hf("FocalNetModel", "FocalNetConfig", image_size=32, patch_size=4,
                                  embed_dim=16,
                                  depths=[1, 1], focal_levels=[2, 2], focal_windows=[3, 3]), _pixels()),
         4, 0, 0, "FocalNetLayer: shortcut + gamma_1 * modulation, h + gamma_2 * mlp; context "
                  "accumulation ctx_all + ctx * gate is gated mixing, no skip; 2 layers x 2"),
]


# -------------------------------------------------------------------------------------- audio


def _wav(model: str, config: str) -> tuple[torch.nn.Module, Any]:
    m = _hf(model, config, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            conv_dim=(16, 16), conv_stride=(4, 2), conv_kernel=(8, 4), num_conv_pos_embeddings=8,
            num_conv_pos_embedding_groups=4)
    return m, {"input_values": torch.randn(B, 400)}


AUDIO = [
    Case("wav2vec2", lambda: _wav("Wav2Vec2Model", "Wav2Vec2Config"),
         5, 0, 0, "Wav2Vec2Encoder h + pos_conv_embed(h) (a weighted conv of h) + Wav2Vec2EncoderLayer "
                  "post-norm attn and ffn residuals 2 x 2 = 5"),
    Case("hubert", lambda: _wav("HubertModel", "HubertConfig"),
         5, 0, 0, "HubertEncoder h + pos_conv_embed(h) + HubertEncoderLayer 2 x 2 = 5"),
]


# ----------------------------------------------------------------------------------- diffusers


def _diffusers() -> Any:
    return pytest.importorskip("diffusers")


def _unet2d() -> tuple[torch.nn.Module, Any]:
    m = _diffusers().UNet2DModel(sample_size=16, in_channels=3, out_channels=3, layers_per_block=1,
                                 block_out_channels=(16, 32), norm_num_groups=8, attention_head_dim=8,
                                 down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                                 up_block_types=("AttnUpBlock2D", "UpBlock2D"))
    return m, {"sample": torch.randn(B, 3, 16, 16), "timestep": torch.tensor([10, 500])}


def _unet2d_condition() -> tuple[torch.nn.Module, Any]:
    m = _diffusers().UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        norm_num_groups=8, cross_attention_dim=16, attention_head_dim=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"))
    return m, {"sample": torch.randn(B, 4, 16, 16), "timestep": torch.tensor([10, 500]),
               "encoder_hidden_states": torch.randn(B, 6, 16)}


def _dit() -> tuple[torch.nn.Module, Any]:
    m = _diffusers().DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4,
                                           num_layers=2, sample_size=8, patch_size=2, num_embeds_ada_norm=10)
    return m, {"hidden_states": torch.randn(B, 4, 8, 8), "timestep": torch.tensor([10, 500]),
               "class_labels": torch.tensor([1, 3])}


def _flux() -> tuple[torch.nn.Module, Any]:
    m = _diffusers().FluxTransformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=2,
                                            attention_head_dim=8, num_attention_heads=2,
                                            joint_attention_dim=16,
                                            pooled_projection_dim=16, guidance_embeds=False,
                                            axes_dims_rope=(2, 2, 4))
    img = torch.stack(torch.meshgrid(torch.zeros(1), torch.arange(4.0), torch.arange(4.0), indexing="ij"),
                      -1).reshape(16, 3)
    return m, {"hidden_states": torch.randn(B, 16, 4), "encoder_hidden_states": torch.randn(B, 4, 16),
               "pooled_projections": torch.randn(B, 16), "timestep": torch.tensor([0.1, 0.7]),
               "img_ids": img, "txt_ids": torch.zeros(4, 3)}


def _vae() -> tuple[torch.nn.Module, Any]:
    m = _diffusers().AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(16, 32),
                                   layers_per_block=1, latent_channels=4, norm_num_groups=8, sample_size=16,
                                   down_block_types=("DownEncoderBlock2D",) * 2,
                                   up_block_types=("UpDecoderBlock2D",) * 2)
    return m, torch.randn(B, 3, 16, 16)


DIFFUSERS = [
    Case("diffusers_unet2d", _unet2d, 12, 5, 4,
         "ResnetBlock2D (in+h)/scale: down 16->16 id, 16->32 conv_shortcut; mid resnet/attn/resnet; "
         "AttnUpBlock2D 2 resnets (cat -> conv_shortcut) + 2 attn; UpBlock2D 2 resnets (proj); "
         "attn residual_connection; 4 up-path cats; h + temb_proj(temb) is conditioning"),
    Case("diffusers_unet2d_condition", _unet2d_condition, 24, 5, 4,
         "as UNet2D with Transformer2DModel (outer h + proj_out(...) and BasicTransformerBlock self, cross, "
         "ff = 4) in place of attn: down 1 + (1+4), mid 1+4+1, up 2x(1+4) + 2, 4 cats"),
    Case("diffusers_dit", _dit, 4, 0, 0,
         "BasicTransformerBlock ada_norm_zero: gate_msa * attn + h, gate_mlp * ff + h (gated); 2 blocks x 2; "
         "AdaLN shift/scale and final modulation are conditioning"),
    Case("diffusers_flux", _flux, 6, 0, 0,
         "FluxTransformerBlock: image h + gate*attn, h + gate*ff, context same = 4; "
         "FluxSingleTransformerBlock "
         "residual + gate * proj_out(cat(attn, mlp)) x 2 = 6; AdaLN and RoPE are no joins"),
    Case("diffusers_autoencoder_kl", _vae, 12, 2, 0,
         "Encoder: ResnetBlock2D 16->16 id, 16->32 conv_shortcut, mid resnet/attn/resnet = 5; "
         "Decoder: mid 3, "
         "UpDecoderBlock2D 32->32 x2, 32->16 (proj), 16->16 = 7; no temb, no skips across"),
]


# ------------------------------------------------------------------------------------ open_clip


def _open_clip(vision: dict[str, Any], embed_dim: int, size: int) -> tuple[torch.nn.Module, Any]:
    oc = pytest.importorskip("open_clip")
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    text = CLIPTextCfg(context_length=T, vocab_size=V, width=32, heads=4, layers=2)
    model = oc.CLIP(embed_dim=embed_dim, vision_cfg=CLIPVisionCfg(**vision), text_cfg=text)
    return model, (torch.randn(B, 3, size, size), _ids())


OPEN_CLIP = [
    Case("open_clip_vit", lambda: _open_clip(dict(layers=2, width=32, head_width=16, patch_size=8,
                                                  image_size=32, mlp_ratio=2.0), 16, 32),
         8, 0, 0, "ResidualAttentionBlock x + ls_1(attn(ln_1 x)), x + ls_2(mlp(ln_2 x)); visual 2 + text 2 "
                  "layers x 2 = 8"),
    Case("open_clip_resnet", lambda: _open_clip(dict(layers=(1, 1, 1, 1), width=16, head_width=64,
                                                     image_size=64), 32, 64),
         8, 4, 0, "ModifiedResNet Bottleneck out += downsample(x) (avgpool+conv1x1+BN) in each of 4 "
                  "stages = 4 "
                  "projections; attnpool cat(mean(x), x) is a pooled token, no skip; text 2 x 2 = 4"),
]


# ------------------------------------------------------------------------------ segment_anything


def _sam() -> Any:
    return pytest.importorskip("segment_anything.modeling")


def _sam_image_encoder() -> tuple[torch.nn.Module, Any]:
    m = _sam().ImageEncoderViT(img_size=64, patch_size=16, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0,
                               out_chans=16, use_rel_pos=True, window_size=2, global_attn_indexes=(1,))
    return m, torch.randn(1, 3, 64, 64)


def _sam_mask_decoder() -> tuple[torch.nn.Module, Any]:
    sam = _sam()
    transformer = sam.TwoWayTransformer(depth=2, embedding_dim=16, mlp_dim=32, num_heads=2)
    m = sam.MaskDecoder(transformer_dim=16, transformer=transformer, num_multimask_outputs=3,
                        iou_head_depth=2, iou_head_hidden_dim=16)
    return m, {"image_embeddings": torch.randn(1, 16, 4, 4), "image_pe": torch.randn(1, 16, 4, 4),
               "sparse_prompt_embeddings": torch.randn(1, 2, 16),
               "dense_prompt_embeddings": torch.randn(1, 16, 4, 4), "multimask_output": True}


def _sam_prompt_encoder() -> tuple[torch.nn.Module, Any]:
    m = _sam().PromptEncoder(embed_dim=16, image_embedding_size=(4, 4), input_image_size=(64, 64),
                             mask_in_chans=4)
    points = (torch.rand(1, 2, 2) * 64, torch.tensor([[1, 0]]))
    return m, {"points": points, "boxes": None, "masks": torch.randn(1, 1, 16, 16)}


SAM = [
    Case("sam_image_encoder", _sam_image_encoder, 4, 0, 0,
         "image_encoder.Block: shortcut + attn(norm1 x) (windowed / global), x + mlp(norm2 x); 2 blocks; "
         "decomposed rel-pos adds are attention biases"),
    Case("sam_mask_decoder", _sam_mask_decoder, 8, 0, 0,
         "TwoWayAttentionBlock: layer 0 (skip_first_layer_pe, self-attn replaces) token->image, mlp, "
         "image->token = 3; layer 1 + self-attn = 4; final token->image = 1; queries + query_pe re-adds "
         "are not blocks"),
    Case("sam_prompt_encoder", _sam_prompt_encoder, 0, 0, 0,
         "PromptEncoder: random-Fourier point embeddings + learned label embeddings, mask downscaling "
         "convs; no residual anywhere"),
]


CASES = DECODERS + ENCODERS + SEQ2SEQ + VISION + AUDIO + DIFFUSERS + OPEN_CLIP + SAM


def test_sweep_is_wide_and_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 60


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_counts(case: Case) -> None:
    sweep.check_counts(case)


# Known analysis failures of cases whose counts are right (``Case.known`` would xfail the counts too).
ANALYSIS_KNOWN: dict[str, str] = {}  # analyses known to fail, by case id, with the cause


@pytest.mark.parametrize("case", [c for c in CASES if c.analyze], ids=lambda c: c.id)
def test_analysis(case: Case, tmp_path: Any) -> None:
    if case.id in ANALYSIS_KNOWN:
        pytest.xfail(ANALYSIS_KNOWN[case.id])
    sweep.check_analysis(case, tmp_path)
