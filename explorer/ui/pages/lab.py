"""Lab: train spec variants on small data and see the paper's ablations for yourself."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from explorer.lab import (
    AblationResult,
    TrainConfig,
    ablation_figure,
    load_ablation,
    load_data,
    run_ablation,
    save_trained,
    train,
    training_figure,
)
from explorer.spec import ExplorerError, load_spec
from explorer.ui import session

SHIPPED = Path(__file__).resolve().parents[3] / "docs" / "ablation" / "ablation.json"
QUICK_LIMIT = 200  # images per split for a quick check

st.title("Lab")
st.caption("The paper's ablations are about learning, not cost: train the variants and watch the curves. "
           "A small network on the handwritten digits trains in a minute on a CPU.")

current = session.current_spec()
choices = {"mini_xception (preset)": load_spec("mini_xception"), f"{current.name} (sidebar)": current}
c1, c2, c3 = st.columns([2, 2, 1])
network = c1.selectbox("Network", list(choices), key="lab_network",
                       help="mini_xception is Xception's structure at 32 px; the sidebar's network with its "
                            "knobs may be too big to train here.")
spec = choices[network]
source = c2.text_input("Data", "digits", key="lab_data",
                       help="'digits' (scikit-learn's 8×8 digits), or a folder of CLASS/IMAGE files.")
quick = c3.toggle("Quick check", key="lab_quick", help=f"Only {QUICK_LIMIT} training and test images.")
c1, c2, c3 = st.columns(3)
epochs = c1.number_input("Epochs", 1, 100, 10, key="lab_epochs")
seed = c2.number_input("Seed", 0, 10_000, 0, key="lab_seed")
lr = c3.number_input("Learning rate", 1e-5, 1.0, 3e-3, format="%.4f", key="lab_lr")
config = TrainConfig(epochs=int(epochs), seed=int(seed), lr=float(lr))
limit = QUICK_LIMIT if quick else None

train_tab, ablate_tab, saved_tab = st.tabs(["Train", "Ablate", "Saved results"])

with train_tab:
    if st.button("Train", type="primary", key="lab_train"):
        bar = st.progress(0.0, text="Loading the data…")
        chart = st.empty()
        try:
            data = load_data(source, input_size=spec.input_size, in_channels=spec.in_channels, limit=limit)

            def progress(p) -> None:
                bar.progress(p.fraction, text=f"epoch {p.epoch}/{p.epochs}, batch {p.batch}/{p.batches}, "
                                              f"loss {p.loss:.3f}")
                if p.phase == "epoch":
                    chart.plotly_chart(training_figure(p.history, epochs=p.epochs), key=f"live_{p.epoch}")

            result = train(spec, data, config, on_progress=progress)
        except ExplorerError as exc:
            bar.empty()
            st.error(str(exc), icon="⚠️")
        else:
            bar.progress(1.0, text=f"done: test accuracy {result.test_accuracy:.2%}")
            path = Path(tempfile.mkdtemp(prefix="explorer-lab-")) / f"{result.spec.name}.safetensors"
            save_trained(path, result, data, command="trained in the app's Lab page")
            st.session_state["lab_last"] = {"history": result.history, "epochs": config.epochs,
                                            "accuracy": result.test_accuracy, "path": str(path),
                                            "notes": list(result.notes) + list(data.notes),
                                            "describe": data.describe()}
            chart.empty()
    last = st.session_state.get("lab_last")
    if last:
        st.plotly_chart(training_figure(last["history"], epochs=last["epochs"]), key="lab_result_curves")
        st.metric("Final test accuracy", f"{last['accuracy']:.2%}")
        st.caption(last["describe"])
        for note in last["notes"]:
            st.caption(f"Note: {note}")
        st.download_button("Download the checkpoint (.safetensors, carries its spec)",
                           Path(last["path"]).read_bytes(), file_name=Path(last["path"]).name,
                           key="lab_download")
        st.caption("Load it on the Classify & Explain page (as a weights file) to classify with it.")

with ablate_tab:
    knob_choices = {"residual": ["true", "false"], "mid_activation": ["none", "relu", "elu"]}
    vary = []
    cols = st.columns(len(knob_choices) + 1)
    for col, (knob, values) in zip(cols, knob_choices.items()):
        picked = col.multiselect(knob, values, default=values, key=f"lab_vary_{knob}")
        if picked:
            vary.append((knob, picked))
    seeds = cols[-1].number_input("Seeds", 1, 10, 3, key="lab_seeds")
    runs = 1
    for _, values in vary:
        runs *= len(values)
    st.caption(f"{runs} variants × {seeds} seeds = {runs * seeds} trainings of {epochs} epochs.")
    if st.button("Run the ablation", type="primary", key="lab_ablate", disabled=not vary):
        bar = st.progress(0.0, text="Loading the data…")
        chart = st.empty()
        shown = [0]

        def progress(p) -> None:
            bar.progress(p.fraction, text=f"run {p.run}/{p.runs}: {p.variant}, seed {p.seed}, "
                                          f"epoch {p.train.epoch}/{p.train.epochs}")
            if len(p.result.runs) > shown[0]:
                shown[0] = len(p.result.runs)
                chart.plotly_chart(ablation_figure(p.result), key=f"ablation_live_{shown[0]}")

        try:
            result = run_ablation(spec, source, vary, seeds=range(int(seed), int(seed) + int(seeds)),
                                  config=config, on_progress=progress, limit=limit)
        except ExplorerError as exc:
            bar.empty()
            st.error(str(exc), icon="⚠️")
        else:
            bar.progress(1.0, text="done")
            chart.empty()
            st.session_state["lab_ablation"] = result.to_dict()


def show_ablation(result: AblationResult, key: str) -> None:
    """The overlaid curves and the final accuracies (mean ± std over seeds)."""
    st.plotly_chart(ablation_figure(result), key=f"{key}_figure")
    rows = [{"variant": r.variant, "seeds": r.seeds, "epochs": r.epochs,
             "final test accuracy": f"{r.test_acc_mean:.2%} ± {r.test_acc_std:.2%}",
             "best test accuracy": f"{r.best_test_acc_mean:.2%}",
             "final test loss": f"{r.test_loss_mean:.4f} ± {r.test_loss_std:.4f}"} for r in result.summary()]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    st.download_button("Download the results (JSON)", json.dumps(result.to_dict(), indent=1),
                       file_name="ablation.json", key=f"{key}_download")


with ablate_tab:
    if "lab_ablation" in st.session_state:
        show_ablation(AblationResult.from_dict(st.session_state["lab_ablation"]), "lab_ablation")

with saved_tab:
    upload = st.file_uploader("An ablation.json written by the lab", type=["json"], key="lab_upload")
    try:
        if upload is not None:
            saved = AblationResult.from_dict(json.loads(upload.getvalue()))
            label = upload.name
        else:
            saved, label = load_ablation(SHIPPED), "the ablation measured for the README"
    except (ExplorerError, ValueError, KeyError) as exc:
        st.error(f"Not an ablation result: {exc}", icon="⚠️")
    else:
        st.caption(f"{label}: {saved.spec_name} on {saved.data}" + (f" — `{saved.command}`" if saved.command else ""))
        show_ablation(saved, "lab_saved")
