"""Triton kernels with torch reference implementations (testable on CPU under TRITON_INTERPRET=1).

Empty until the first kernel lands (see the model issue); kept so the layout is the one users expect.
"""
