"""ESM-2 (Lin et al. 2023) from fair-esm, with a sequence-classification head and a safe loader.

Why fair-esm's ``esm.model.esm2.ESM2`` rather than transformers' ``EsmForSequenceClassification``:
it is one pure-PyTorch file with no dependency besides torch (so it can be carried to a GPU
machine without a package registry), its parameter names are those of the released ESM-2
``.pt`` checkpoints, and each attention block exposes the paper's neurons as separate
``nn.Linear`` modules (``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``; FFN ``fc1``, ``fc2``).

Shapes: ``tokens`` (B, T) long with BOS/EOS/padding of the ESM-1b alphabet; inside the layers
fair-esm keeps activations as (T, B, E).
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from theorylab.errors import ConfigError, DataFormatError
from theorylab.validation import check_int, check_real

__all__ = ["ESM_SHAPES", "alphabet", "build_esm2", "encode", "ESMClassifier", "mask_tokens",
           "mlm_loss", "save_esm2_checkpoint", "load_esm2_checkpoint"]

#: (num_layers, embed_dim, attention_heads). "t6_8M" is esm2_t6_8M_UR50D's shape.
ESM_SHAPES: dict[str, tuple[int, int, int]] = {
    "tiny": (2, 32, 4),     # unit tests: a few thousand parameters
    "small": (4, 64, 4),    # CPU study runs
    "t6_8M": (6, 320, 20),  # ESM-2 8M (7.5M parameters)
}


@functools.lru_cache(maxsize=1)
def alphabet():
    """The ESM-1b/ESM-2 alphabet (33 tokens; cls=0, pad=1, eos=2, mask=32)."""
    import esm
    return esm.data.Alphabet.from_architecture("ESM-1b")


def build_esm2(size: str = "tiny", *, num_layers: int | None = None, embed_dim: int | None = None,
               attention_heads: int | None = None, token_dropout: bool = True,
               seed: int | None = None) -> nn.Module:
    """An untrained fair-esm ``ESM2`` of a named shape (``ESM_SHAPES``), fields overridable."""
    from esm.model.esm2 import ESM2
    if size not in ESM_SHAPES:
        raise ConfigError(f"'size' of build_esm2 must be one of {', '.join(ESM_SHAPES)}. "
                          f"Got {size!r}.")
    nl, ed, nh = ESM_SHAPES[size]
    nl = check_int("build_esm2", "num_layers", nl if num_layers is None else num_layers, lo=1)
    ed = check_int("build_esm2", "embed_dim", ed if embed_dim is None else embed_dim, lo=2)
    nh = check_int("build_esm2", "attention_heads", nh if attention_heads is None
                   else attention_heads, lo=1)
    if ed % nh or (ed // nh) % 2:
        raise ConfigError(f"'embed_dim' of build_esm2 must be a multiple of 2*attention_heads "
                          f"(rotary embeddings). Got {ed} with {nh} heads.")
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return ESM2(nl, ed, nh, alphabet(), token_dropout)
    return ESM2(nl, ed, nh, alphabet(), token_dropout)


def encode(sequences: Sequence[str], max_len: int = 128) -> torch.Tensor:
    """Token ids (B, T): BOS + the first ``max_len - 2`` residues + EOS, right-padded.

    T is the longest encoded sequence of the batch (at most ``max_len``).
    """
    max_len = check_int("encode", "max_len", max_len, lo=3)
    a = alphabet()
    rows = [[a.cls_idx, *(a.get_idx(c) for c in s[: max_len - 2]), a.eos_idx] for s in sequences]
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), a.padding_idx, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r)
    return out


def residue_mask(tokens: torch.Tensor) -> torch.Tensor:
    """(B, T) bool: True on residue positions (not BOS, EOS or padding)."""
    a = alphabet()
    return (tokens != a.cls_idx) & (tokens != a.eos_idx) & (tokens != a.padding_idx)


class ESMClassifier(nn.Module):
    """ESM-2 encoder + mean pooling over residues + linear head.

    ``logits = W · mean_{t ∈ residues} h_L(t) + b`` where ``h_L`` is the final (layer-normed)
    representation, as in ESM's sequence-level probes.
    """

    def __init__(self, esm2: nn.Module, n_classes: int):
        super().__init__()
        self.esm = esm2
        self.n_classes = check_int("ESMClassifier", "n_classes", n_classes, lo=2)
        self.head = nn.Linear(esm2.embed_dim, self.n_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        nl = self.esm.num_layers
        h = self.esm(tokens, repr_layers=[nl])["representations"][nl]  # (B, T, E)
        m = residue_mask(tokens).unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp_min(1.0)
        return self.head(pooled)


def mask_tokens(tokens: torch.Tensor, generator: torch.Generator, p: float = 0.15
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT/ESM masking: pick residues with prob. ``p``; of those 80 % → <mask>, 10 % → random
    residue, 10 % kept. Returns (inputs, targets) with targets −100 where not picked."""
    p = check_real("mask_tokens", "p", p, lo=0, hi=1, lo_open=True)
    a = alphabet()
    g = generator
    pick = (torch.rand(tokens.shape, generator=g, device=tokens.device) < p) & residue_mask(tokens)
    targets = torch.where(pick, tokens, torch.full_like(tokens, -100))
    u = torch.rand(tokens.shape, generator=g, device=tokens.device)
    inputs = tokens.clone()
    inputs[pick & (u < 0.8)] = a.mask_idx
    rnd = pick & (u >= 0.8) & (u < 0.9)
    residues = torch.tensor([a.get_idx(c) for c in "ACDEFGHIKLMNPQRSTVWY"], device=tokens.device)
    inputs[rnd] = residues[torch.randint(len(residues), (int(rnd.sum()),), generator=g,
                                         device=tokens.device)]
    return inputs, targets


def mlm_loss(esm2: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Masked-LM cross-entropy −mean_{masked t} log p(x_t | x_{\\masked}) (ESM-2 objective)."""
    logits = esm2(inputs)["logits"]
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                       ignore_index=-100)


# ----------------------------------------------------------------------------- checkpoints
_PREFIX = "encoder.sentence_encoder."


def save_esm2_checkpoint(esm2: nn.Module, path) -> Path:
    """Write ``esm2`` in the layout of the released ESM-2 ``.pt`` files (``cfg.model`` Namespace
    + ``model`` state dict with the ``encoder.sentence_encoder.`` prefix)."""
    path = Path(path)
    cfg = argparse.Namespace(encoder_layers=esm2.num_layers, encoder_embed_dim=esm2.embed_dim,
                             encoder_attention_heads=esm2.attention_heads,
                             token_dropout=esm2.token_dropout)
    state = {_PREFIX + k: v.detach().cpu() for k, v in esm2.state_dict().items()
             if not k.startswith("contact_head.")}
    torch.save({"cfg": {"model": cfg}, "model": state}, path)
    return path


def load_esm2_checkpoint(path) -> nn.Module:
    """Load an ESM-2 model from a local checkpoint: a fair-esm ``.pt`` file (e.g.
    ``esm2_t6_8M_UR50D.pt``) or a transformers directory (``config.json`` +
    ``model.safetensors`` or ``pytorch_model.bin``, e.g. a download of
    ``facebook/esm2_t6_8M_UR50D``).

    Safe loading only: ``.pt``/``.bin`` through ``torch.load(weights_only=True)`` (with
    ``argparse.Namespace`` as the one allowed global: the released ``.pt`` files pickle their
    config as a Namespace), safetensors through ``safetensors.torch.load_file``. The
    contact-regression head, when absent, keeps its initial values.

    Raises
    ------
    DataFormatError
        Missing/unreadable file, a pickle needing other globals, or a layout that is not ESM-2.
    """
    path = Path(path)
    if path.is_dir():
        return _load_hf_directory(path)
    if not path.is_file():
        raise DataFormatError("no such checkpoint file", path)
    data = _safe_torch_load(path)
    try:
        cfg = data["cfg"]["model"]
        get = (lambda k: cfg[k]) if isinstance(cfg, dict) else (lambda k: getattr(cfg, k))
        nl, ed, nh = get("encoder_layers"), get("encoder_embed_dim"), get("encoder_attention_heads")
        td = bool(get("token_dropout"))
        state = data["model"]
    except (KeyError, TypeError, AttributeError) as exc:
        raise DataFormatError(f"not an ESM-2 checkpoint (missing {exc})", path) from None
    state = {k.removeprefix(_PREFIX).removeprefix("encoder."): v for k, v in state.items()}
    return _assemble(path, int(nl), int(ed), int(nh), td, state)


def _safe_torch_load(path: Path):
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a format error here
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataFormatError(f"not a safely loadable checkpoint ({first})", path) from None


def _assemble(path: Path, nl: int, ed: int, nh: int, td: bool, state: dict) -> nn.Module:
    from esm.model.esm2 import ESM2
    model = ESM2(nl, ed, nh, alphabet(), td)
    own = model.state_dict()
    optional = {k for k in own if k.startswith("contact_head.") or k.endswith("rot_emb.inv_freq")}
    missing, unexpected = set(own) - set(state) - optional, set(state) - set(own)
    if missing or unexpected:
        what = f"missing {sorted(missing)[:3]}" if missing else f"unexpected {sorted(unexpected)[:3]}"
        raise DataFormatError(f"state dict does not match ESM2({nl}, {ed}, {nh}): {what}", path)
    bad = [k for k in state if state[k].shape != own[k].shape]
    if bad:
        raise DataFormatError(f"shape of {bad[0]} is {tuple(state[bad[0]].shape)}, ESM2({nl}, "
                              f"{ed}, {nh}) needs {tuple(own[bad[0]].shape)}", path)
    model.load_state_dict(state, strict=False)
    return model


# transformers EsmForMaskedLM / EsmModel name → fair-esm name, per layer ("{i}") and global
_HF_LAYER = {"attention.self.query": "self_attn.q_proj", "attention.self.key": "self_attn.k_proj",
             "attention.self.value": "self_attn.v_proj",
             "attention.output.dense": "self_attn.out_proj",
             "attention.LayerNorm": "self_attn_layer_norm", "intermediate.dense": "fc1",
             "output.dense": "fc2", "LayerNorm": "final_layer_norm"}
_HF_GLOBAL = {"embeddings.word_embeddings.weight": "embed_tokens.weight",
              "encoder.emb_layer_norm_after.weight": "emb_layer_norm_after.weight",
              "encoder.emb_layer_norm_after.bias": "emb_layer_norm_after.bias",
              "contact_head.regression.weight": "contact_head.regression.weight",
              "contact_head.regression.bias": "contact_head.regression.bias",
              "lm_head.dense.weight": "lm_head.dense.weight", "lm_head.dense.bias": "lm_head.dense.bias",
              "lm_head.layer_norm.weight": "lm_head.layer_norm.weight",
              "lm_head.layer_norm.bias": "lm_head.layer_norm.bias", "lm_head.bias": "lm_head.bias"}


def _hf_to_fair(state: dict) -> dict:
    import re
    out: dict = {}
    # LayerNorm parameters appear as weight/bias (Hub files) or gamma/beta (transformers 5 saves)
    layer_re = re.compile(r"^encoder\.layer\.(\d+)\.(.+)\.(weight|bias|gamma|beta)$")
    suffix = {"weight": "weight", "bias": "bias", "gamma": "weight", "beta": "bias"}
    for key, value in state.items():
        k = key.removeprefix("esm.")
        if k in _HF_GLOBAL:
            out[_HF_GLOBAL[k]] = value
            continue
        m = layer_re.match(k)
        if m and m.group(2) in _HF_LAYER:
            out[f"layers.{m.group(1)}.{_HF_LAYER[m.group(2)]}.{suffix[m.group(3)]}"] = value
        elif k.endswith("inv_freq") or k == "lm_head.decoder.weight" or k.startswith(
                ("classifier.", "embeddings.position_ids")):
            continue  # rotary buffer (recomputed), tied decoder, task heads: not ESM2 weights
        else:
            out[key] = value  # reported as unexpected by _assemble
    if "embed_tokens.weight" in out:
        out["lm_head.weight"] = out["embed_tokens.weight"]  # fair-esm ties the LM head
    return out


def _load_hf_directory(path: Path) -> nn.Module:
    import json
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise DataFormatError("transformers checkpoint directory lacks config.json", path)
    try:
        cfg = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"config.json is not JSON ({exc.msg})", cfg_path, exc.lineno) from None
    need = ("num_hidden_layers", "hidden_size", "num_attention_heads")
    if cfg.get("model_type") != "esm" or any(k not in cfg for k in need):
        raise DataFormatError("config.json is not an ESM config (model_type 'esm' with "
                              f"{', '.join(need)})", cfg_path)
    ed = int(cfg["hidden_size"])
    rules = {"position_embedding_type": "rotary", "intermediate_size": 4 * ed,
             "emb_layer_norm_before": False, "vocab_size": len(alphabet())}
    for key, want in rules.items():
        if key in cfg and cfg[key] != want:
            raise DataFormatError(f"ESM-2 needs {key} = {want!r}; config.json has "
                                  f"{cfg[key]!r}", cfg_path)
    st_file, bin_file = path / "model.safetensors", path / "pytorch_model.bin"
    if st_file.is_file():
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ConfigError("reading model.safetensors needs the 'safetensors' package "
                              "(pip install safetensors)") from None
        state = load_file(str(st_file))
    elif bin_file.is_file():
        state = _safe_torch_load(bin_file)
    else:
        raise DataFormatError("directory has neither model.safetensors nor pytorch_model.bin",
                              path)
    model = _assemble(path, int(cfg["num_hidden_layers"]), ed, int(cfg["num_attention_heads"]),
                      bool(cfg.get("token_dropout", True)), _hf_to_fair(state))
    if "layer_norm_eps" in cfg:  # fair-esm builds torch LayerNorms with eps 1e-5 (= ESM-2's)
        for mod in model.modules():
            if isinstance(mod, nn.LayerNorm):
                mod.eps = float(cfg["layer_norm_eps"])
    return model
