"""Small pieces shared by the package's figures (matplotlib is imported by the caller)."""

from __future__ import annotations

__all__ = ["north_east_arrows"]


def north_east_arrows(ax, color: str = "black") -> None:
    """North and east arrows in the lower-left corner of a sky map shown north up, east left (axes fractions)."""
    ax.annotate("", xy=(0.12, 0.30), xytext=(0.12, 0.08), xycoords="axes fraction",
                arrowprops={"arrowstyle": "->", "color": color})  # fmt: skip
    ax.annotate("", xy=(0.06, 0.08), xytext=(0.26, 0.08), xycoords="axes fraction",
                arrowprops={"arrowstyle": "->", "color": color})  # fmt: skip
    ax.text(0.12, 0.32, "N", transform=ax.transAxes, ha="center", va="bottom", fontsize=8, color=color)
    ax.text(0.04, 0.08, "E", transform=ax.transAxes, ha="right", va="center", fontsize=8, color=color)
