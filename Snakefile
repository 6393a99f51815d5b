"""spinefx: benign vs malignant vertebral fractures on spine MRI (Yeh et al. 2022), end to end."""

import os
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")


configfile: os.path.join(workflow.basedir, "config", "config.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


if DEMO:

    include: "workflow/rules/demo.smk"


include: "workflow/rules/convert.smk"
include: "workflow/rules/register.smk"
include: "workflow/rules/patches.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/stats.smk"


localrules:
    all,
    assign_folds,
    merge_predictions,
    run_info,


rule all:
    default_target: True
    input:
        all_outputs(),
