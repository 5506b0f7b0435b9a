"""FPN Explorer: ``streamlit run dashboard.py`` (an operator may add ``-- --weights PATH``).

This file is the frame only (``ui.frame.run``): page config, navigation over ``pages/``, the
shared sidebar, the link's warnings and the weights notice; then the chosen page runs.
"""

from ui import frame

frame.run()
