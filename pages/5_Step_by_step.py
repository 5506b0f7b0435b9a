"""FPN step by step: for each level, c_k -> lateral 1x1 -> top-down -> merge -> 3x3 -> p_k."""

from __future__ import annotations

from ui import frame, step_page

settings = frame.settings()
frame.header(
    "FPN step by step",
    "Each row follows one pyramid level from the top of the pyramid down: the backbone stage **c_k**, its "
    "**lateral 1×1** conv, the **upsampled map from the level above**, the **merged** map and the **3×3** output "
    "**p_k**. Pick an ablation of the FPN paper's Table 1 to see which steps it removes.",
)
step_page.show_step_by_step_page(settings)
