"""The search-efficiency summary: medians over seeds, censoring, and the target check."""

from benchmarks.search_efficiency import _parse_sampler, summarise, verdict


def run(label, sampler, curve, seeding="none"):
    return {"label": label, "sampler": sampler, "options": {}, "seeding": seeding,
            "curve": curve, "distinct": len(curve), "cpu_seconds": 0.1}


def test_summary_and_target():
    fast = [0.5, 0.96, 1.0, 1.0, 1.0, 1.0]
    slow = [0.2, 0.4, 0.6, 0.8, 0.9, 0.95]
    never = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    runs = [run("nsga2", "nsga2", c) for c in (fast, fast, never)]
    runs += [run("random", "random", c) for c in (slow, slow, never)]
    runs += [run("tpe", "tpe", c) for c in (never, never, fast)]
    summary = summarise(runs)
    assert summary["nsga2"]["trials_to_95"] == [2, 2, None]
    assert summary["nsga2"]["median_trials_to_95"] == 2 and summary["nsga2"]["reached_95"] == 2
    assert summary["random"]["median_trials_to_95"] == 6
    assert summary["tpe"]["median_trials_to_95"] is None  # most seeds never reach 95%
    assert summary["nsga2"]["median_fraction"][0] == 0.5
    assert summary["nsga2"]["q25_fraction"][1] == (0.2 + 0.96) / 2
    v = verdict(summary)
    assert v["best_unseeded"] == "nsga2" and v["random_over_default"] == 3.0
    assert v["target_met"] is True
    summary["random"]["median_trials_to_95"] = 5
    assert verdict(summary)["target_met"] is False
    summary["nsga2"]["median_trials_to_95"] = None
    summary["random"]["median_trials_to_95"] = None
    assert verdict(summary)["target_met"] is False  # neither reaching 95% is no success


def test_sampler_options_parse():
    assert _parse_sampler("nsga2") == ("nsga2", "nsga2", {})
    label, name, options = _parse_sampler("nsga2:population_size=16,crossover_prob=0.8")
    assert name == "nsga2" and options == {"population_size": 16, "crossover_prob": 0.8}
