"""Layer 4: analyses over traces: diffs, sweeps, closed-form formulas, per-module views."""
