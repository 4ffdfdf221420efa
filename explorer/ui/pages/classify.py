"""Classify & Explain: top-5 of both networks on your images, and why, with Captum."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from explorer.explain import (
    SCALES,
    SIGNS,
    EmptyMapError,
    comparison_figure,
    default_layer,
    explain_tensor,
    get_method,
    layer_choices,
    method_names,
    npy_bytes,
    png_bytes,
    render,
)
from explorer.infer import (
    PRECISIONS,
    ImageError,
    available_devices,
    classify,
    decode_image,
    list_samples,
    resolve_device,
)
from explorer.infer.images import EXTENSIONS
from explorer.lab import digits_samples
from explorer.spec import ExplorerError
from explorer.ui import graphs, models, session

st.title("Classify & Explain")
current = session.current_spec()

# -- networks --------------------------------------------------------------------------------------
mode = st.segmented_control("Weights", models.MODES, default=models.IMAGENET, key="cls_mode") or models.IMAGENET
choices: list[models.Choice] = []
if mode in (models.IMAGENET, models.RANDOM):
    options = models.imagenet_networks(current)
    picked = st.multiselect("Networks", list(options), default=["xception", "inception_v3"], key="cls_networks")
    weights = "imagenet" if mode == models.IMAGENET else "random"
    choices = [models.Choice(name, options[name], weights) for name in picked]
elif mode == models.DIGITS:
    choices = [models.digits_choice()]
    st.caption("mini_xception trained on scikit-learn's digits (98 % test accuracy): works with no download.")
else:
    upload = st.file_uploader("Checkpoint (.safetensors from the Lab or the CLI, or a .pth/.pt state dict)",
                              type=["safetensors", "pth", "pt"], key="cls_ckpt")
    if upload is not None:
        path = models.saved_upload(upload.getvalue(), upload.name)
        spec_yaml = None if upload.name.endswith(".safetensors") else current.to_yaml()
        choices = [models.Choice(upload.name, spec_yaml, path)]
        if spec_yaml:
            st.caption(f"A .pth file carries no spec: it is loaded into the sidebar's network ({current.name}).")

loaded = []
for choice in choices:
    try:
        model, missing = models.load(choice)
    except ExplorerError as exc:
        st.error(f"{choice.label}: {exc}", icon="⚠️")
        continue
    if missing:
        st.warning(f"**{choice.label} runs with random weights**: {missing}", icon="📦")
    for note in model.notes:
        st.caption(f"{choice.label}: {note}")
    loaded.append((choice, model))

with st.expander("Preprocessing and device"):
    for choice, model in loaded:
        st.markdown(f"**{choice.label}** ({model.weights} weights): {model.preprocess.describe()}")
    c1, c2, c3 = st.columns(3)
    device = c1.selectbox("Device", ["auto", *available_devices()], key="cls_device",
                          help="auto: CUDA, then MPS, then the CPU. A GPU out of memory falls back to the CPU.")
    gpu = device != "cpu" and available_devices()[0] != "cpu"
    precision = c2.selectbox("Precision", list(PRECISIONS) if gpu else ["fp32"], key="cls_precision",
                             help="bf16/fp16 autocast needs a GPU.")
    top = c3.number_input("Top classes", 1, 20, 5, key="cls_top")

# -- images ----------------------------------------------------------------------------------------
uploads = st.file_uploader("Images", type=list(EXTENSIONS), accept_multiple_files=True,
                           key="cls_images", help="JPEG, PNG, WebP, BMP, GIF or TIFF; several at once.")
if mode == models.DIGITS:
    samples = {f"digit {label} (#{i})": image for i, (image, label) in enumerate(digits_samples(10))}
else:
    samples = {s.name: s.path for s in list_samples()}
chosen = st.pills("Or samples", list(samples), selection_mode="multi", key=f"cls_samples_{mode}")
images: list[tuple[str, object]] = [(u.name, u.getvalue()) for u in uploads or []]
for name in chosen or []:
    sample = samples[name]
    if hasattr(sample, "save"):  # a PIL image (digits)
        buffer = io.BytesIO()
        sample.save(buffer, format="PNG")
        images.append((f"{name}.png", buffer.getvalue()))
    else:
        images.append((name, sample.read_bytes()))

if not loaded or not images:
    st.info("Choose at least one network and one image (upload, or click a sample).")
    st.stop()


@st.cache_data(max_entries=64, show_spinner="Classifying…")
def _classify(choice: models.Choice, data: bytes, name: str, device: str, precision: str, top: int):
    model, _ = models.load(choice)
    return classify([data], model, device=device, precision=precision, top=top, errors="collect")


# -- results ---------------------------------------------------------------------------------------
for name, data in images:
    st.subheader(name)
    try:
        decoded = decode_image(data, name=name)
    except ImageError as exc:
        st.error(str(exc), icon="🚫")
        continue
    cols = st.columns([1] + [2] * len(loaded))
    cols[0].image(decoded.image, width="stretch")
    for note in decoded.notes:
        cols[0].caption(note)
    for col, (choice, model) in zip(cols[1:], loaded):
        result = _classify(choice, data, name, device, precision, int(top))
        r = result.results[0]
        label = f"{choice.label} — {model.weights} weights"
        col.markdown(f"**{label}**")
        if not r.ok:
            col.error(r.error)
            continue
        frame = pd.DataFrame({"class": [p.label for p in r.top], "probability": [p.probability for p in r.top]})
        fig = px.bar(frame, x="probability", y="class", orientation="h", range_x=[0, 1],
                     text=frame["probability"].map(lambda p: f"{p:.1%}"))
        fig.update_layout(height=70 + 30 * len(frame), margin=dict(l=10, r=10, t=10, b=10),
                          yaxis=dict(autorange="reversed", title=None))
        col.plotly_chart(fig, key=f"top_{name}_{choice.label}")
        col.caption(f"{result.latency_ms:.0f} ms on {result.device} ({result.precision})")
        for note in result.notes:
            col.caption(note)

# -- explain ---------------------------------------------------------------------------------------
st.divider()
st.header("Explain")
names = [name for name, _ in images]
c1, c2 = st.columns([2, 3])
target_image = c1.selectbox("Image", names, key="exp_image")
methods = c2.multiselect("Methods", method_names(), default=["saliency", "gradcam"], key="exp_methods",
                         format_func=lambda m: get_method(m).title)
c1, c2, c3 = st.columns(3)
sign = c1.selectbox("Sign", ["default", *SIGNS], key="exp_sign",
                    help="signed: for and against the class; absolute: how much; positive: for it only.")
scale = c2.selectbox("Colour scale", list(SCALES), key="exp_scale",
                     help="shared: every map on one scale, so they compare; per-map: each on its own.")
target_mode = c3.text_input("Target class", "", key="exp_target", placeholder="the predicted class",
                            help="A class index or name; empty explains the predicted class.")

layers: dict[str, str] = {}
if any(get_method(m).uses_layer for m in methods):
    for choice, model in loaded:
        spec_layers = model.model.layers
        options = [c.name for c in layer_choices(spec_layers)]
        key = f"exp_layer_{choice.label}"
        picked = st.session_state.get(f"{key}_clicked")
        default = picked if picked in options else default_layer(spec_layers)
        layers[choice.label] = st.selectbox(f"Grad-CAM layer of {choice.label}", options,
                                            index=options.index(default), key=f"{key}_{default}")
    with st.expander("Pick the Grad-CAM layer on the graph"):
        first, first_model = loaded[0]
        clicked = graphs.flow_graph(first_model.spec, key="exp_graph", default_level="layer", selectable=True)
        if clicked and clicked != st.session_state.get(f"exp_layer_{first.label}_clicked"):
            st.session_state[f"exp_layer_{first.label}_clicked"] = clicked
            st.rerun()

if st.button("Explain", type="primary", key="explain", disabled=not methods):
    data = dict(images)[target_image]
    bar = st.progress(0.0, text="Explaining…")
    results = []
    jobs = [(choice, model, m) for choice, model in loaded for m in methods]
    try:
        decoded = decode_image(data, name=target_image)
        for i, (choice, model, method) in enumerate(jobs):
            pre = model.preprocess
            crop = pre.crop_image(decoded.image)

            def progress(fraction: float, i: int = i) -> None:
                bar.progress(min(1.0, (i + fraction) / len(jobs)),
                             text=f"{get_method(method).title} on {choice.label} ({fraction:.0%})")

            target = target_mode.strip() or None
            if target is not None and target.isdigit():
                target = int(target)
            results.append(explain_tensor(
                model.on(resolve_device(device)), model.inputs([decoded.image])[0], method, target=target,
                layer=layers.get(choice.label) if get_method(method).uses_layer else None,
                image=np.asarray(crop.convert("RGB")), classes=model.classes, mean=pre.mean, std=pre.std,
                progress=progress, model_name=choice.label, source=target_image))
    except ExplorerError as exc:
        bar.empty()
        st.error(str(exc), icon="⚠️")
    else:
        bar.progress(1.0, text="done")
        st.session_state["exp_results"] = results

results = st.session_state.get("exp_results")
if results:
    chosen_sign = None if sign == "default" else sign
    st.plotly_chart(comparison_figure(results, sign=chosen_sign, scale=scale), key="exp_figure")
    for r in results:
        st.caption(f"{r.model} · {r.title}: target {r.target_label or r.target}"
                   + (f" (layer {r.layer})" if r.layer else "") + f" · {r.seconds:.2f} s"
                   + ("".join(f" · {n}" for n in r.notes)))
    with st.expander("Downloads"):
        for i, r in enumerate(results):
            c1, c2, c3 = st.columns([3, 1, 1])
            c1.markdown(f"{r.model} · {r.title}")
            try:
                picture = png_bytes(render(r, sign=chosen_sign))
            except EmptyMapError as exc:
                c2.caption(str(exc))
            else:
                c2.download_button("PNG", picture, file_name=f"{r.method}_{i}.png", key=f"png_{i}")
            c3.download_button(".npy", npy_bytes(r), file_name=f"{r.method}_{i}.npy", key=f"npy_{i}")
