"""moetheory: executable companion to four theory papers on Mixture of Experts.

Concept modules (``runtime``, ``hermite``, ``routing``, ``experts``, ``optim``, ``metrics``, ``data``,
``estimators``, ``bounds``, ``ledger``, ``plotting``) are shared by the chapters; ``moetheory.papers`` wires them
into each paper's experiment and claims.
"""

__version__ = "0.1.0"
