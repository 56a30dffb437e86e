"""Bad-input cases of ``ligbind passivate`` and ``compute.passivation`` (used by tests/test_bad_input.py).

Rows as in that file's tables: (subcommand, option, argv, fragment of the one-line message) and
(campaign key path, value, fragment). Each must end with exit code 2, one line, nothing written.
"""

from __future__ import annotations

PV = ("passivate",)
PVS = ("passivate", "--slab", "slab.extxyz")

CLI_ROWS = [
    ("passivate", "--slab", (*PV, "--slab", "missing.extxyz"), "structure file not found"),
    ("passivate", "--slab", (*PV, "--slab", "cut.extxyz"), "not PbI2-terminated"),
    ("passivate", "--slab", (*PVS, "--material", "CsPbI3"), "not both"),
    ("passivate", "--material", (*PV, "--material", "CsPbBr9"), "invalid choice: 'CsPbBr9'"),
    ("passivate", "--material", (*PV, "--material", "MAPbI3", "--mode", "substitute"), "needs a surface Cs"),
    ("passivate", "--phase", (*PV, "--phase", "orthorhombic"), "invalid choice"),
    ("passivate", "--size", (*PV, "--size", "2x"), "bad slab size '2x'"),
    ("passivate", "--layers", (*PV, "--layers", "0"), "bad number of layers 0"),
    ("passivate", "--vacuum", (*PV, "--vacuum", "nan"), "not a finite number"),
    ("passivate", "--fix-layers", (*PV, "--fix-layers=-1"), "need at least 0"),
    ("passivate", "--br-fraction", (*PV, "--br-fraction", "1.5"), "Br fraction"),
    ("passivate", "--seed", (*PV, "--seed=-1"), "bad seed -1"),
    ("passivate", "--mode", (*PVS, "--mode", "weird"), "invalid choice: 'weird'"),
    ("passivate", "--n", (*PVS, "--n", "0"), "bad number of K per slab 0"),
    ("passivate", "--n", (*PVS, "--n", "5"), "5 K per slab is too many: this slab has 4 A-type hollows"),
    ("passivate", "--n", (*PVS, "--n", "5", "--mode", "substitute"), "this slab has 4 surface Cs"),
    ("passivate", "--exchange", (*PVS, "--exchange=-1"), "need at least 0"),
    ("passivate", "--exchange", (*PVS, "--exchange", "9"), "9 exchanged I is too many"),
    ("passivate", "--exchange", (*PVS, "--exchange", "5"), "no hollow arrangement of 1 K with 5 exchanged I"),
    ("passivate", "--arrangements", (*PVS, "--arrangements", "0"), "bad number of arrangements 0"),
    ("passivate", "--frenkel", (*PVS, "--frenkel=1"), "ignored explicit argument"),
    ("passivate", "--pairs", (*PVS, "--frenkel", "--pairs", "0"), "bad number of Frenkel pairs 0"),
    ("passivate", "--pairs", (*PVS, "--pairs", "2"), "give --frenkel too"),
    ("passivate", "--quiet", (*PVS, "--quiet=1"), "ignored explicit argument"),
    ("passivate", "--protocol", (*PVS, "--protocol", "dft-magic"), "unknown protocol 'dft-magic'"),
    ("passivate", "--set", (*PVS, "--set", "{bad"), "not valid JSON"),
    ("passivate", "--db", (*PVS, "--db", "notadb.db"), "not an SQLite"),
    ("passivate", "--workdir", (*PVS, "--workdir", "afile"), "afile is a file"),
    ("passivate", "--json", (*PVS, "--json=1"), "ignored explicit argument"),
]

CAMPAIGN_ROWS = [
    ("compute.passivation", "hollow", "compute.passivation: Input should be a mapping"),
    ("compute.passivation.mode", "weird", "compute.passivation.mode"),
    ("compute.passivation.n", 0, "compute.passivation.n"),
    ("compute.passivation.n", 5, "compute.passivation: 5 K per slab is too many"),
    ("compute.passivation.n", "1", "compute.passivation.n: Input should be a valid integer"),
    ("compute.passivation.exchange", -1, "compute.passivation.exchange"),
    ("compute.passivation.exchange", 9, "9 exchanged I is too many"),
    ("compute.passivation.arrangements", 0, "compute.passivation.arrangements"),
    ("compute.passivation.frenkel", "yes", "compute.passivation.frenkel: Input should be a valid boolean"),
    ("compute.passivation.colour", "blue", "compute.passivation.colour: unknown key"),
]
