"""spinefx: benign vs malignant vertebral fractures on spine MRI (Yeh et al. 2022), end to end."""

import os
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")


configfile: os.path.join(workflow.basedir, "config", "config.yaml")


report: "workflow/report/workflow.rst"


# Software images for `--sdm apptainer` (pip image, envs/Containerfile) and `--sdm conda apptainer`
# (the rules' conda envs prebuilt, envs/Dockerfile.conda). Both are built by the user from envs/
# and published nowhere (envs/README.md); by default they are local .sif files beside the recipes,
# and the SPINEFX_IMAGE / SPINEFX_CONDA_IMAGE environment variables point at another copy (a .sif
# path or a docker:// URI in your own registry).
SOFTWARE_IMAGE = os.environ.get(
    "SPINEFX_IMAGE", os.path.join(workflow.basedir, "envs", "spinefx-0.1.0.sif")
)
CONDA_IMAGE = os.environ.get(
    "SPINEFX_CONDA_IMAGE",
    os.path.join(workflow.basedir, "envs", "spinefx-conda-0.1.0.sif"),
)
if "conda" in {str(m) for m in workflow.deployment_settings.deployment_method}:

    containerized: CONDA_IMAGE

else:

    container: SOFTWARE_IMAGE


include: "workflow/rules/common.smk"


if DEMO:

    include: "workflow/rules/demo.smk"


include: "workflow/rules/convert.smk"
include: "workflow/rules/register.smk"
include: "workflow/rules/patches.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/stats.smk"
include: "workflow/rules/predict.smk"


localrules:
    all,
    assign_folds,
    merge_predictions,
    run_info,
    predict_all,


rule all:
    default_target: True
    input:
        all_outputs(),
