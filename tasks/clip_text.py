"""Stage ``clip_text``: CLIP embeddings of one class's prompt ensemble, shared by its images.

``embed_class`` is the plain function (what a Dask worker runs outside a flow: pickled by its
own name, it stays plain there; pickling the task's ``.fn`` would find the Prefect task under
the module's name and start Prefect's ephemeral API server in the worker); ``clip_text`` is
its Prefect task."""

from __future__ import annotations

from zsad.stores import class_key

from .common import zsad_task
from .runner import ShardJob
from .worker import get_model


def embed_class(job: ShardJob, class_name: str) -> int:
    """The class's prompt embeddings, unless cached; returns the units written (0 or 1)."""
    pc, store = job.cfg, job.store
    key = class_key("clip_text", job.hash("clip_text"), job.dataset, class_name)
    if store.is_complete(key):
        return 0
    from zsad.pipeline import embed_prompts  # model code only when there is work
    text = embed_prompts(get_model(pc.clip, device=pc.device, batch_size=pc.batch_size), class_name, pc)
    store.write_unit(key, {
        "emb_pd": text.emb_pd,
        "anomalous_p": text.prompts.anomalous_p,
        "seed_extension_p": text.prompts.seed_extension_p,
        "prompt": list(text.prompts.texts),  # the texts: a coordinate for plain xarray
    }, {"texts": list(text.prompts.texts), "logit_scale": text.logit_scale})
    store.index.flush(("clip_text",))
    return 1


clip_text = zsad_task("clip_text")(embed_class)
