"""README's plain-Keras recipe, run as written (on a small dataset): make_dataset batches
into a keras.applications model, with nothing of ours in the model."""

import re

from conftest import REPO_ROOT, write_labeled_dataset


def readme_recipe() -> str:
    with open(f"{REPO_ROOT}/README.md", encoding="utf-8") as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)
    [recipe] = [block for block in blocks if block.startswith("# plain Keras")]
    return recipe


def test_the_readme_recipe_trains_a_keras_application(tmp_path):
    data_dir = write_labeled_dataset(tmp_path, 90, "shards", side=32, shards=2, val_shards=1,
                                     val_fraction=0.2)
    recipe = readme_recipe()
    assert '"workspace/shards/digits"' in recipe
    namespace = {}
    exec(recipe.replace('"workspace/shards/digits"', repr(data_dir)), namespace)
    history = namespace["model"].history.history
    assert len(history["loss"]) == 1 and history["loss"][0] > 0
