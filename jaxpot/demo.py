"""``jaxpot demo``: the built-in showcase, no input files needed.

A small periodic box of q-TIP4P/F water (built and relaxed on the fly) is
run with classical NVT (Langevin) and with ring-polymer PIMD (PILE-L) at
300 K. The demo prints both summaries, the kinetic energy of H with and
without nuclear quantum effects, and writes a figure with the O-H radial
distribution functions (classical vs quantum) and the energies.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .build import water_box
from .io import prepare_directory, read_thermo
from .errors import InputError


def demo_configs(directory: Path, quick: bool = False) -> dict:
    """The run configurations of the demo (also a template for users)."""
    molecules = 32
    common = {
        "potential": {"kind": "qtip4pf"},
        "system": {"file": str(directory / "water.extxyz")},
    }
    if quick:
        nvt = {"steps": 200, "equilibration_steps": 100, "timestep": 0.5, "block_steps": 100}
        pimd = {"steps": 100, "equilibration_steps": 50, "timestep": 0.25, "block_steps": 50, "beads": 4}
        every = 10
    else:
        nvt = {"steps": 4000, "equilibration_steps": 1000, "timestep": 0.5, "block_steps": 1000}
        pimd = {"steps": 2000, "equilibration_steps": 500, "timestep": 0.25, "block_steps": 500, "beads": 8}
        every = 10
    return {
        "molecules": molecules,
        "classical": {**common, "md": {"ensemble": "nvt", "thermostat": "langevin", "temperature": 300.0,
                                        "tau": 100.0, "seed": 1, **nvt},
                      "output": {"directory": str(directory / "classical"), "every": every}},
        "quantum": {**common, "md": {"ensemble": "pimd", "thermostat": "pile_l", "temperature": 300.0,
                                      "tau": 100.0, "seed": 2, **pimd},
                    # every bead is written: the quantum RDF is an average over beads,
                    # not the RDF of the centroids
                    "output": {"directory": str(directory / "pimd"), "every": every, "all_beads": True}},
    }


def run_demo(directory="runs/demo", overwrite: bool = False, quick: bool = False, progress: bool = True):
    """Run the showcase into ``directory``; returns the two summaries."""
    from ase.io import write

    from .simulate import run_md
    from .simulate.output import print_summary

    directory = prepare_directory(directory, overwrite=overwrite)
    for sub in ("classical", "pimd"):
        if (directory / sub).exists() and not overwrite:
            raise InputError(f"{directory / sub} exists (use --overwrite)")
    cfg = demo_configs(directory, quick=quick)
    print(f"jaxpot demo: building {cfg['molecules']} q-TIP4P/F water molecules at 0.997 g/cm^3")
    atoms = water_box(cfg["molecules"], density=0.997, seed=0)
    write(directory / "water.extxyz", atoms, format="extxyz")
    summaries = {}
    for name in ("classical", "quantum"):
        print(f"\n== {name} run ({cfg[name]['md']['ensemble']}, {cfg[name]['md'].get('beads', 1)} bead(s)) ==")
        summaries[name] = run_md(cfg[name], overwrite=overwrite, progress=progress)
        print_summary(summaries[name], cfg[name]["output"]["directory"])
    kc = summaries["classical"]["kinetic_energy_per_atom_eV"]["H"]
    kq = summaries["quantum"]["kinetic_energy_per_atom_eV"]["H"]
    print(f"\nkinetic energy of H: classical {1000 * kc['mean']:.1f} +/- {1000 * kc['sem']:.1f} meV "
          f"(3/2 kT = 38.8 meV), quantum {1000 * kq['mean']:.1f} +/- {1000 * kq['sem']:.1f} meV "
          f"with {cfg['quantum']['md']['beads']} beads (not converged in the bead number: about 144 meV "
          f"at 16 beads in experiments/README.md; q-TIP4P/F literature: about 143-150 meV)")
    try:
        _plot(directory, cfg)
        print(f"figure: {directory / 'demo.png'}")
    except ImportError:
        print("(install matplotlib for the figure: pip install jaxpot[plot])")
    return summaries


def _rdf(traj_file, r_max=4.0, n_bins=200):
    from ase.io import read

    import jax.numpy as jnp
    from .dynamics.observables import radial_distribution

    frames = read(traj_file, index=":")
    pos = np.stack([a.get_positions() for a in frames])
    a0 = frames[0]
    r, g = radial_distribution(jnp.asarray(pos), jnp.asarray(a0.cell.array), jnp.asarray(a0.numbers),
                               pair=(8, 1), r_max=r_max, n_bins=n_bins)
    return np.asarray(r), np.asarray(g)


def _plot(directory: Path, cfg):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for name, traj, color in (("classical", "classical/trajectory.extxyz", "C0"),
                              ("PIMD (all beads)", "pimd/trajectory_beads.extxyz", "C3")):
        r, g = _rdf(directory / traj)
        sub = traj.split("/")[0]
        ax[0].plot(r, g, color=color, label=name)
        th = read_thermo(directory / sub / "thermo.csv")
        ax[1].plot(th["time_fs"] / 1000, th["potential_energy_eV"], color=color, label=f"{name} potential")
    ax[0].set_xlabel("r (A)")
    ax[0].set_ylabel("g_OH(r)")
    ax[0].set_title("O-H radial distribution, 300 K")
    ax[0].legend()
    ax[1].set_xlabel("time (ps)")
    ax[1].set_ylabel("energy (eV)")
    ax[1].legend()
    fig.tight_layout()
    fig.savefig(directory / "demo.png", dpi=100)
    plt.close(fig)
