"""One module per paper, registering that paper's claims and figures.

:func:`theorylab.claims.load_all` imports every module here; nothing else needs to know them.
"""
