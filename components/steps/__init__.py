"""Pipeline steps as Kubeflow components: one module per step.

Each module holds a plain function that does the step on local paths (tested without
KFP) and a `@dsl.component` that maps KFP artifacts onto it. The components import
`anomalyops` inside their bodies: on a cluster from IMAGE, locally from this interpreter.
"""

# The default container image that holds this package (and kfp), built from the repository.
# Each compile or submit may name another (tag or digest): pipelines/cluster_settings.py.
IMAGE = "ghcr.io/anomalyops/anomalyops:0.1.0"


def component(func):
    """`@dsl.component` on IMAGE without installing kfp (the image has it).

    Inside a running step kfp.dsl exposes only its runtime types, not `component`; the
    step body imports its own module there, so the decorator is then a no-op.
    """
    from kfp import dsl

    if not hasattr(dsl, "component"):
        return func
    return dsl.component(func, base_image=IMAGE, install_kfp_package=False)
