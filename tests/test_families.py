"""Detection families that once went wrong on real architectures, each on a minimal hand-written
model: the rule in docs/concepts.md that decides it, and the answer it must give."""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resprobe import Inputs, capture, find_blocks, streams, verify_blocks
from resprobe.capture import ModuleTree, forward, preserved
from resprobe.instrument import Instrument


def found(model: nn.Module, *inputs: Any, verify: bool = True) -> dict[str, Any]:
    """Blocks of one capture: counts by skip and join kind, stream lengths, names; every block
    checked numerically on a replay."""
    torch.manual_seed(0)
    model.eval()
    graph = capture(model, inputs)
    blocks = find_blocks(graph)
    if verify:
        checks = verify_blocks(model, inputs, graph, blocks)
        assert all(c.ok for c in checks)
    return {"skip": Counter(b.skip_kind for b in blocks),
            "join": Counter(b.join_kind for b in blocks if b.is_residual),
            "streams": [len(s.blocks) for s in streams(blocks)],
            "names": [b.name for b in blocks], "blocks": blocks, "graph": graph}


# -- 1. every output of a multi-output op is its own value ------------------------------------


class Res2NetLike(nn.Module):
    """Res2Net's hierarchical split: ``sp = conv(sp + spx[i])`` adds a *different* part of the
    split to ``sp``, computed from another part: no residual. The bottleneck's ``x + f(x)`` is."""

    def __init__(self, width: int = 4, scale: int = 4):
        super().__init__()
        self.width = width
        self.conv1 = nn.Conv2d(width * scale, width * scale, 1)
        self.convs = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in range(scale - 1))
        self.conv3 = nn.Conv2d(width * scale, width * scale, 1)

    def forward(self, x: Tensor) -> Tensor:
        spx = torch.split(self.conv1(x).relu(), self.width, 1)
        out, sp = [], spx[0]
        for i, conv in enumerate(self.convs):
            sp = conv(sp if i == 0 else sp + spx[i]).relu()
            out.append(sp)
        out.append(spx[-1])
        return (x + self.conv3(torch.cat(out, 1))).relu()


class CSPLike(nn.Module):
    """CSPNet/ShuffleNetV2: ``cat(x1, f(x2))`` of two halves of one tensor is no concat skip
    (``f`` never reads ``x1``); a real one, ``cat(x, f(x))``, still is."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.f = nn.Conv2d(c // 2, c // 2, 3, padding=1)
        self.g = nn.Conv2d(c, c, 1)

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = x.chunk(2, dim=1)
        y = torch.cat([x1, self.f(x2)], 1)
        return torch.cat([y, self.g(y)], 1)


def test_each_output_of_a_multi_output_op_is_its_own_node() -> None:
    x = torch.randn(2, 3, 8)
    graph = capture(lambda_module(lambda t: [p.sum() for p in (*t.chunk(2, -1), *t.unbind(0),
                                                               *torch.split(t, [3, 5], -1))]), x)
    chunk = [n for n in graph.nodes if n.op == "Tensor.chunk"]
    unbind = [n for n in graph.nodes if n.op == "Tensor.unbind"]
    split = [n for n in graph.nodes if n.op.endswith("split")]
    assert [n.output_index for n in chunk] == [0, 1] and [n.output_index for n in unbind] == [0, 1]
    unpacked = capture(lambda_module(lambda t: [p.sum() for p in t]), x)  # a, b = t: an unbind
    assert [(n.name, n.output_index) for n in unpacked.nodes[1:3]] == [("unbind[0]", 0), ("unbind[1]", 1)]
    assert [n.shape for n in split] == [(2, 3, 3), (2, 3, 5)]
    assert [n.name for n in chunk] == ["chunk[0]", "chunk[1]"]
    assert all(n.inputs == (0,) for n in chunk + unbind + split)
    sums = [n for n in graph.nodes if n.op == "Tensor.sum"]
    assert [n.inputs[0] for n in sums] == [n.id for n in chunk + unbind + split]
    assert graph.to_dict()["nodes"][chunk[1].id]["output_index"] == 1
    assert graph.nodes[0].output_index is None and graph.to_dict()["nodes"][0]["output_index"] is None


def test_res2net_split_adds_are_not_residuals() -> None:
    got = found(Res2NetLike(), torch.randn(1, 16, 6, 6))
    # the hierarchical cat([y0, y1, y2, spx[3]]) is a concat skip: y1, y2 are computed from y0
    assert got["skip"] == {"identity": 1, "concat": 1}
    graph, (concat, block) = got["graph"], got["blocks"]
    assert graph[concat.skip_operand].op == "Tensor.relu" and block.join_op == "Tensor.add"


def test_halves_of_one_tensor_are_no_concat_skip() -> None:
    got = found(CSPLike(), torch.randn(2, 8, 5, 5))
    assert got["skip"] == {"concat": 1}
    assert got["blocks"][0].skip_operand == got["graph"].find("cat").id


def test_gates_split_a_block_input_read_by_a_multi_output_op() -> None:
    """The fork is read by a ``chunk`` (two nodes, one call): both halves are gated, and the
    skip and branch parts of the gradient still add up to the gradient at the block input."""

    class ChunkBranch(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.f, self.g = nn.Linear(6, 6), nn.Linear(3, 3), nn.Linear(3, 3)

        def forward(self, x: Tensor) -> Tensor:
            x = self.a(x)
            p, q = x.chunk(2, -1)
            return x + torch.cat([self.f(p), self.g(q)], -1)

    torch.manual_seed(0)
    model, inputs = ChunkBranch(), Inputs((torch.randn(4, 6),))
    graph = capture(model, inputs)
    blocks = [b for b in find_blocks(graph) if b.is_residual]
    assert len(blocks) == 1
    plan = Instrument(graph, blocks, watch=(blocks[0].fork,))
    grads: dict[str, Tensor] = {}
    kept: dict[int, Tensor] = {}

    class Listener:
        def joined(self, *a: Any, **k: Any) -> None: ...
        def delta(self, *a: Any) -> None: ...
        def entered(self, i: int, role: str, grad: Tensor) -> None:
            grads[role] = grads[role] + grad if role in grads else grad
        def node(self, node_id: int, out: Tensor) -> None:
            kept[node_id] = out

    listener, tree, mismatches = Listener(), ModuleTree(model), []
    anchor = torch.zeros((), requires_grad=True)
    with preserved(model, tree, False), torch.enable_grad():
        out, rec = forward(model, tree, inputs, watcher=plan.watcher(listener),
                           rewrite=lambda r: plan.rewrites(r, listener, anchor, mismatches))  # type: ignore[arg-type]
        assert plan.check(rec, mismatches) and not plan.ungated()
    (want,) = torch.autograd.grad(out.pow(2).sum(), [kept[blocks[0].fork]])
    torch.testing.assert_close(grads["skip"] + grads["branch"], want)


class _Lambda(nn.Module):
    def __init__(self, fn: Any):
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Any:
        return self.fn(x)


def lambda_module(fn: Any) -> nn.Module:
    return _Lambda(fn)


# -- 2. RoPE is never a block, whatever precedes it --------------------------------------------


class RMSNorm(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: Tensor) -> Tensor:
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))


def rotate_half(x: Tensor) -> Tensor:
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


class QKNormRoPE(nn.Module):
    """Qwen3/OLMo2 attention: ``q = rmsnorm_w(q)``, then ``q·cos + rotate_half(q)·sin``. The
    norm's weight multiply is on both halves of the RoPE sum: it belongs to neither."""

    def __init__(self, d: int = 16, heads: int = 2):
        super().__init__()
        self.heads, self.hd = heads, d // heads
        self.norm1, self.norm2 = RMSNorm(d), RMSNorm(d)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.q_norm, self.k_norm = RMSNorm(self.hd), RMSNorm(self.hd)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.SiLU(), nn.Linear(2 * d, d))

    def attn(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        b, t, _ = x.shape
        q, k, v = (p(x).view(b, t, self.heads, self.hd) for p in (self.q, self.k, self.v))
        q, k, v = self.q_norm(q).transpose(1, 2), self.k_norm(k).transpose(1, 2), v.transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o(att.transpose(1, 2).reshape(b, t, -1))

    def forward(self, x: Tensor, positions: Tensor | None = None) -> Tensor:
        pos = torch.arange(x.shape[1], dtype=x.dtype) if positions is None else positions.to(x.dtype)
        freqs = pos[..., None] / (100.0 ** (torch.arange(0, self.hd, 2, dtype=x.dtype) / self.hd))
        emb = torch.cat((freqs, freqs), -1)
        cos, sin = emb.cos(), emb.sin()
        if cos.dim() == 3:  # one row of positions per sample: broadcast over the heads
            cos, sin = cos[:, None], sin[:, None]
        x = x + self.attn(self.norm1(x), cos, sin)
        return x + self.mlp(self.norm2(x))


def test_rope_after_a_weighted_qk_norm_is_no_block() -> None:
    got = found(QKNormRoPE(), torch.randn(2, 5, 16))
    assert got["skip"] == {"identity": 2} and got["join"] == {"add": 2}
    assert got["streams"] == [2]


def test_rope_with_positions_given_as_an_input_is_no_block() -> None:
    got = found(QKNormRoPE(), torch.randn(2, 5, 16), torch.arange(5).expand(2, 5))
    assert got["skip"] == {"identity": 2} and got["streams"] == [2]


# -- 3. conditioning adds are not blocks; gated residuals behind a modulation are ----------------


class TimeResBlock(nn.Module):
    """A diffusers ResnetBlock2D: ``h = conv1(x) + time_emb_proj(temb)`` adds a per-channel
    embedding of the timestep (broadcast over the image): conditioning, not a block. The
    block is ``x + conv2(h)`` (a 1x1 projection when the width changes)."""

    def __init__(self, cin: int, cout: int, tdim: int = 8):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(cin, cout, 3, padding=1), nn.Conv2d(cout, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(tdim, cout)
        self.shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        h = self.conv1(F.silu(x))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(h))
        return (x if self.shortcut is None else self.shortcut(x)) + h


class TimeUNetLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.time = nn.Sequential(nn.Linear(1, 8), nn.SiLU(), nn.Linear(8, 8))
        self.blocks = nn.ModuleList([TimeResBlock(4, 4), TimeResBlock(4, 8), TimeResBlock(8, 8)])

    def forward(self, sample: Tensor, timestep: Tensor) -> Tensor:
        temb = self.time(timestep[:, None].float())
        for block in self.blocks:
            sample = block(sample, temb)
        return sample


class AdaLNBlock(nn.Module):
    """A DiT block: ``x + gate ⊙ attn(norm(x)·(1 + scale) + shift)``; shift, scale and gate come
    from the conditioning alone. Two gated residuals; the modulation adds are none."""

    def __init__(self, d: int = 16):
        super().__init__()
        self.ada = nn.Linear(d, 6 * d)
        self.norm = nn.LayerNorm(d, elementwise_affine=False)
        self.attn = nn.MultiheadAttention(d, 2, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(F.silu(c)).unsqueeze(1).chunk(6, -1)
        h = self.norm(x) * (1 + scale1) + shift1
        x = x + gate1 * self.attn(h, h, h, need_weights=False)[0]
        return x + gate2 * self.mlp(self.norm(x) * (1 + scale2) + shift2)


class DiTLike(nn.Module):
    def __init__(self, d: int = 16):
        super().__init__()
        self.embed = nn.Linear(4, d)
        self.t_embed, self.y_embed = nn.Linear(1, d), nn.Embedding(10, d)
        self.blocks = nn.ModuleList([AdaLNBlock(d), AdaLNBlock(d)])

    def forward(self, x: Tensor, t: Tensor, y: Tensor) -> Tensor:
        x = self.embed(x)
        c = self.t_embed(t[:, None]) + self.y_embed(y)
        for block in self.blocks:
            x = block(x, c)
        return x


def test_a_time_embedding_added_per_channel_is_conditioning() -> None:
    got = found(TimeUNetLike(), torch.randn(2, 4, 6, 6), torch.tensor([3.0, 7.0]))
    assert got["skip"] == {"identity": 2, "projection": 1}
    assert got["names"] == ["blocks.0", "blocks.1", "blocks.2"] and got["streams"] == [3]


def test_adaln_modulation_is_conditioning_and_its_gated_residuals_are_blocks() -> None:
    got = found(DiTLike(), torch.randn(2, 5, 4), torch.tensor([1.0, 2.0]), torch.tensor([3, 4]))
    assert got["skip"] == {"identity": 4} and got["join"] == {"gated": 4}
    assert got["names"] == ["blocks.0.attn", "blocks.0.mlp", "blocks.1.attn", "blocks.1.mlp"]
    assert got["streams"] == [4]


# -- 7. a stream continues through partial-channel joins and parallel branch adds ---------------


class PartialChannel(nn.Module):
    """RexNet: ``cat([y[:, :c] + x, y[:, c:]])`` widens the stream; DPN: a block returns
    ``(resid, dense)`` and the next one reads ``cat([resid, dense])`` (its ``cat([dense,
    y[:, 6:]])`` is a concat skip). One stream of 4 residual blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.rex = nn.ModuleList([nn.Conv2d(4, 6, 1), nn.Conv2d(6, 8, 1)])
        self.dpn = nn.ModuleList([nn.Conv2d(8, 8, 1), nn.Conv2d(10, 8, 1)])

    def forward(self, x: Tensor) -> Tensor:
        for conv in self.rex:
            y = conv(x).relu()
            c = x.shape[1]
            x = torch.cat([y[:, :c] + x, y[:, c:]], 1)
        resid, dense = x[:, :6], x[:, 6:]
        for conv in self.dpn:
            y = conv(torch.cat([resid, dense], 1))
            resid, dense = resid + y[:, :6], torch.cat([dense, y[:, 6:]], 1)
        return torch.cat([resid, dense], 1)


class ParallelLayer(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, 2, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, x: Tensor) -> Tensor:
        h = self.ln(x)
        return x + self.attn(h, h, h, need_weights=False)[0] + self.mlp(h)


class ParallelBlock(nn.Module):
    """Cohere/GPT-J: ``x + attn(ln x) + mlp(ln x)``: the first add is the join; the second adds
    a further branch of the same input and carries the stream on. One stream of 2."""

    def __init__(self, d: int = 8):
        super().__init__()
        self.layers = nn.Sequential(ParallelLayer(d), ParallelLayer(d))

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


def test_a_stream_continues_through_partial_channel_joins() -> None:
    got = found(PartialChannel(), torch.randn(1, 4, 3, 3))
    assert got["skip"] == {"identity": 4, "concat": 2} and got["streams"] == [4]


def test_a_stream_continues_through_a_parallel_branch_add() -> None:
    got = found(ParallelBlock(), torch.randn(2, 5, 8))
    assert got["skip"] == {"identity": 2} and got["streams"] == [2]
    assert got["names"] == ["layers.0.attn", "layers.1.attn"]


# -- 4. projection shortcuts: views cost nothing; a sum of side terms is no projection ----------


class PoolSkip(nn.Module):
    """MViT: the attention's shortcut is ``pool_skip(project(norm(x)))``: a linear, then a
    max-pool of the patch tokens between a split, reshapes, permutes and a ``cat`` with the class
    token. One op of weights and one pool, however many views: a projection skip. Without the
    linear (MViTv1: ``pool_skip(x)``) it is still one (a pool is a shape-changing shortcut)."""

    def __init__(self, d: int = 8, project: bool = True):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.project = nn.Linear(d, 2 * d) if project else None
        dout = 2 * d if project else d
        self.q, self.out = nn.Linear(d, dout), nn.Linear(dout, dout)
        self.k = nn.Linear(d, dout)
        self.pool = nn.MaxPool2d(2)

    def pool_tokens(self, x: Tensor) -> Tensor:
        cls, rest = torch.tensor_split(x, (1,), dim=1)
        b, n, c = rest.shape
        side = int(n ** 0.5)
        rest = self.pool(rest.transpose(1, 2).reshape(b, c, side, side).contiguous())
        return torch.cat((cls, rest.reshape(b, c, -1).transpose(1, 2)), dim=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm(x)
        q = self.pool_tokens(self.q(h))
        att = torch.softmax(q @ self.k(h).transpose(1, 2), -1) @ self.k(h)
        skip = self.pool_tokens(h if self.project is None else self.project(h))
        return skip + self.out(att)


class RelPosSum(nn.Module):
    """MViTv2's relative positions: ``attn + ((rel_h + rel_w) + rel_t)``, each term an einsum of
    the same query with its own table. The three are side terms of the scores, not a shortcut."""

    def __init__(self, d: int = 4):
        super().__init__()
        self.qkv = nn.Linear(d, 3 * d)
        self.rh, self.rw, self.rt = (nn.Parameter(torch.randn(2, 2, d)) for _ in range(3))

    def forward(self, x: Tensor) -> Tensor:
        b = x.shape[0]
        q, k, v = self.qkv(x).chunk(3, -1)
        attn = (q @ k.transpose(1, 2)).view(b, 2, 2, 2, 2)
        rq = q.view(b, 2, 2, -1)
        rel_h = torch.einsum("bhwc,hkc->bhwk", rq, self.rh)[:, :, :, :, None]
        rel_w = torch.einsum("bhwc,wkc->bhwk", rq, self.rw)[:, :, :, None, :]
        rel = rel_h + rel_w
        rel += torch.einsum("bhwc,hkc->bhwk", rq, self.rt)[:, :, :, :, None]
        attn = (attn + rel).view(b, 4, 4)
        return torch.softmax(attn, -1) @ v


def test_a_pool_shortcut_through_views_is_a_projection() -> None:
    for project in (True, False):
        got = found(PoolSkip(project=project), torch.randn(2, 17, 8))
        assert got["skip"] == {"projection": 1}, project
        block = got["blocks"][0]
        ops = {got["graph"][i].op.rsplit(".", 1)[-1] for i in block.skip}
        assert "max_pool2d" in ops and ("linear" in ops) == project


def test_a_sum_of_relative_position_terms_is_no_block() -> None:
    got = found(RelPosSum(), torch.randn(2, 4, 4))
    assert not got["blocks"]


def test_two_parallel_branches_summed_are_no_projection() -> None:
    """ViT-22B's parallel block: ``attn_proj(attn(y)) + mlp_proj(gelu(y_mlp))`` with ``y`` split
    from one in-projection; the MLP's side is no shortcut (it holds more weights); the block is
    ``x + (...)``."""

    class Parallel(nn.Module):
        def __init__(self, d: int = 8):
            super().__init__()
            self.norm, self.inp = nn.LayerNorm(d), nn.Linear(d, 8 * d)
            self.q_norm, self.k_norm = nn.LayerNorm(d), nn.LayerNorm(d)
            self.attn_out, self.mlp_out = nn.Linear(d, d), nn.Linear(5 * d, d)

        def forward(self, x: Tensor) -> Tensor:
            y_mlp, q, k, v = torch.split(self.inp(self.norm(x)), [5 * x.shape[-1]] + [x.shape[-1]] * 3, -1)
            att = F.scaled_dot_product_attention(self.q_norm(q), self.k_norm(k), v)
            return x + (self.attn_out(att) + self.mlp_out(F.gelu(y_mlp)))

    got = found(Parallel(), torch.randn(2, 5, 8))
    assert got["skip"] == {"identity": 1}


# -- 5. an embedding re-added at each layer is no branch -----------------------------------------


class Attention(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        return self.o(F.scaled_dot_product_attention(self.q(q), self.k(k), self.v(v)))


class PromptLayer(nn.Module):
    """SAM's TwoWayAttentionBlock, token side: ``q = queries + query_pe`` before every attention
    (the prompt embedding, data, re-added each layer) and ``queries + attn(q, keys + key_pe,
    keys)``: the re-adds are no blocks; the residual is found through them."""

    def __init__(self, d: int):
        super().__init__()
        self.self_attn, self.cross = Attention(d), Attention(d)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.ReLU(), nn.Linear(2 * d, d))

    def forward(self, queries: Tensor, keys: Tensor, query_pe: Tensor, key_pe: Tensor) -> Tensor:
        q = queries + query_pe
        queries = self.norm1(queries + self.self_attn(q, q, queries))
        queries = self.norm2(queries + self.cross(queries + query_pe, keys + key_pe, keys))
        return self.norm3(queries + self.mlp(queries))


class PromptDecoder(nn.Module):
    def __init__(self, d: int = 8):
        super().__init__()
        self.layers = nn.ModuleList([PromptLayer(d), PromptLayer(d)])

    def forward(self, image: Tensor, image_pe: Tensor, prompts: Tensor) -> Tensor:
        queries = prompts
        for layer in self.layers:
            queries = layer(queries, image, prompts, image_pe)
        return queries


def test_a_prompt_embedding_re_added_at_each_layer_is_no_branch() -> None:
    got = found(PromptDecoder(), torch.randn(1, 6, 8), torch.randn(1, 6, 8), torch.randn(1, 3, 8))
    assert got["skip"] == {"identity": 6}
    assert got["names"] == [f"layers.{i}.{m}" for i in (0, 1) for m in ("self_attn", "cross", "mlp")]
    assert got["streams"] == [6]


# -- 6. post-norm decoders; streams that start at a learned token ------------------------------


def test_post_norm_transformer_decoder_keeps_its_cross_attention_residual() -> None:
    """``norm2(x + mha(x, memory, memory))``: the only weighted op on the branch reads ``x``
    with the encoder's memory (a side input). Three blocks a layer, one stream per side."""
    torch.manual_seed(0)
    model = nn.Transformer(d_model=16, nhead=2, num_encoder_layers=2, num_decoder_layers=3,
                           dim_feedforward=32, dropout=0.0, batch_first=True)
    got = found(model, torch.randn(2, 7, 16), torch.randn(2, 5, 16))
    assert got["skip"] == {"identity": 2 * 2 + 3 * 3} and got["streams"] == [4, 9]
    assert got["names"][4:7] == ["decoder.layers.0.self_attn", "decoder.layers.0.multihead_attn",
                                 "decoder.layers.0"]


class ClassAttention(nn.Module):
    """CaiT: ``x_cls + attn(norm(cat(x_cls, x)))`` then ``x_cls + mlp(norm(x_cls))``; the first
    block's ``x_cls`` is the learned class token itself (an expanded parameter)."""

    def __init__(self, d: int = 8):
        super().__init__()
        self.cls_token = nn.Parameter(torch.randn(1, 1, d))
        self.embed = nn.Linear(4, d)
        self.blocks = nn.ModuleList(nn.ModuleDict({
            "norm1": nn.LayerNorm(d), "attn": nn.MultiheadAttention(d, 2, batch_first=True),
            "norm2": nn.LayerNorm(d), "mlp": nn.Linear(d, d)}) for _ in range(2))

    def forward(self, x: Tensor) -> Tensor:
        x = self.embed(x)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        for b in self.blocks:
            u = b["norm1"](torch.cat([cls, x], 1))
            cls = cls + b["attn"](u[:, :1], u, u, need_weights=False)[0]
            cls = cls + b["mlp"](b["norm2"](cls))
        return cls


def test_a_stream_starting_at_a_learned_token_begins_at_its_first_data_skip() -> None:
    """The decision (docs/concepts.md, "Streams and steps"): a join needs two operands that
    carry data, so the class token's first update (its skip is the parameter) is not a block;
    the class-token stream starts at the next join. 3 blocks, one stream (the second block's
    ``cat([x_cls, x])``, ``x_cls`` now computed from ``x``, is a concat skip)."""
    got = found(ClassAttention(), torch.randn(2, 5, 4))
    assert got["skip"] == {"identity": 3, "concat": 1} and got["streams"] == [3]
    assert got["graph"][got["blocks"][0].skip_operand].op == "Tensor.add"  # cls after its 1st update
