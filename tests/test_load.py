"""20 simulated users on the page (gradio_client) while one training runs: every request answered or queued."""

import pytest


@pytest.mark.browser
def test_twenty_users_ask_and_browse_while_a_run_trains(tiny_model):
    from studio.load_bench import bench

    r = bench(tiny_model, users=20, questions=1, train_steps=10)
    assert not r["errors"], [(e["kind"], e.get("error")) for e in r["errors"][:3]]
    assert r["compare"]["answered"] == 20 and r["runs"]["answered"] == 20
    assert r["training_kept_running"]
    assert r["queued"] > 0 and r["deepest_queue_position"] >= 1  # Compare is limited to 2 at once: others wait
    print(r["compare"], r["runs"], r["wall_s"])
