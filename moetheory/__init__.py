"""moetheory: executable companion to four theory papers on Mixture of Experts.

The shared core, used by every chapter: ``runtime`` (device, precision, seeds, threads), ``checks`` (one-line
argument errors), ``routing``, ``experts``, ``moe`` and ``optim`` (the MoE layer and its training), ``activations``
(every nonlinearity and link, in one registry), ``metrics``, ``hermite`` (Hermite expansions and information
exponents), ``ledger`` and ``reproduce`` (claims and recorded runs), ``plotting``, ``cli``, ``datasets`` (the real data
of the analogue sections, found and verified); ``primer`` holds the primer chapter's toy problem.

Each paper lives in its own package, ``moetheory.papers.<paper>`` (``chen2022``, ``kawata2025``, ``makkuva2019``,
``wang2025``, and ``hermite`` for the Hermite chapter's experiment): its ``Config``, ``run`` and ``claims`` in the
package itself, its data generator and models in its modules. ``moetheory.data`` and ``moetheory.estimators``
re-export the public generators and ``TensorEM`` under the names the book's contract promises.
"""

__version__ = "0.1.0"
