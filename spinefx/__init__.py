"""spinefx: benign vs malignant vertebral fractures on spine MRI (Yeh et al. 2022), as a library.

Every piece of logic of the workflow lives here behind plain function signatures (arrays, paths,
plain values), so each stage is unit-tested without Snakemake and reusable outside it.
"""

__version__ = "0.1.0"
