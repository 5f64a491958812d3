import json

import pytest


@pytest.fixture(scope="session")
def sparse_data(tmp_path_factory):
    """A few sparse-evidence records (16-frame videos): paths of root / train / test."""
    from videoktr.frames.sparse import make_sparse

    return make_sparse(tmp_path_factory.mktemp("sparse"), n_train=6, n_test=4, seed=0)


@pytest.fixture(scope="session")
def sparse_records(sparse_data):
    return json.loads(sparse_data["train"].read_text()), json.loads(sparse_data["test"].read_text())


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, sparse_records):
    from videoktr.data.synthetic import synthetic_corpus
    from videoktr.models.tiny import build_tiny_model

    train, test = sparse_records
    return build_tiny_model(tmp_path_factory.mktemp("tiny"), corpus=synthetic_corpus(train + test, "short"))


@pytest.fixture(scope="session")
def tiny(tiny_model_dir):
    from videoktr.models.tiny import load_model_and_processor

    model, processor = load_model_and_processor(tiny_model_dir)
    model.eval()
    return model, processor
