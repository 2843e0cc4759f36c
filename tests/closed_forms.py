"""Closed forms of reference pvt.md section 5: total MACs and parameters of any built-in configuration.

Independent of the tracer (pure arithmetic on the config), so tests can compare traced totals with them.
"""

from __future__ import annotations

from pvttrace.config import LINEAR_SRA_POOL, PvtConfig


def closed_form_macs(cfg: PvtConfig) -> int:
    """Reference pvt.md section 5, 'pure' convention (conv + linear + matmul)."""
    total = 0
    in_chans = cfg.in_chans
    for geo in cfg.geometry():
        i = geo.index - 1
        c, hid, n, nt, kv = cfg.dims[i], cfg.mlp_hidden(i), geo.hw[0] * geo.hw[1], geo.tokens, geo.kv_tokens
        kernel = cfg.patch_kernel(i)[0]
        total += kernel * kernel * in_chans * c * n
        block = 2 * nt * c * c + 2 * nt * c * hid + 2 * kv * c * c + 2 * nt * kv * c
        if cfg.linear_sra:
            block += LINEAR_SRA_POOL**2 * c * c
        elif cfg.sr_ratios[i] > 1:
            block += cfg.sr_ratios[i] ** 2 * c * c * kv
        if cfg.version == 2:
            block += 9 * hid * n
        total += cfg.depths[i] * block
        in_chans = c
    if cfg.task == "cls":
        total += cfg.dims[-1] * cfg.num_classes
    return cfg.batch * total


def closed_form_params(cfg: PvtConfig) -> int:
    """Reference pvt.md section 5 parameter formula, generalised to any stage count."""
    total = 0
    in_chans = cfg.in_chans
    bias = 1 if cfg.qkv_bias else 0
    last = cfg.num_stages - 1
    for i in range(cfg.num_stages):
        c, hid, r = cfg.dims[i], cfg.mlp_hidden(i), cfg.sr_ratios[i]
        kernel = cfg.patch_kernel(i)[0]
        total += kernel * kernel * in_chans * c + c + 2 * c
        block = 2 * c + (c * c + bias * c) + (2 * c * c + 2 * bias * c) + (c * c + c) + 2 * c
        block += (c * hid + hid) + (hid * c + c)
        if cfg.linear_sra:
            block += c * c + c + 2 * c
        elif r > 1:
            block += r * r * c * c + c + 2 * c
        if cfg.version == 2:
            block += 9 * hid + hid
        total += cfg.depths[i] * block
        if cfg.version == 1:
            gh, gw = cfg.pos_grid(i)
            total += (gh * gw + (1 if i == last else 0)) * c
        else:
            total += 2 * c
        in_chans = c
    if cfg.version == 1 and cfg.task == "cls":
        total += cfg.dims[-1] + 2 * cfg.dims[-1]
    if cfg.task == "cls":
        total += cfg.dims[-1] * cfg.num_classes + cfg.num_classes
    return total
