"""The classic "bring your own" example's handler, for comparison only (benchmarks/serving.py part c).

Written in that example's style: `pandas.read_csv` on every request, no validation, CSV only, the result written
through a DataFrame. It runs under exactly the same gunicorn settings as the real server (serving.serve.Server),
only the WSGI app differs. Never shipped in an image.
"""

from __future__ import annotations

import io
import os
import sys

import flask
import pandas as pd

from serving import serve


def create_app():
    from algorithms import registry
    from serving.model import model_dir

    model = registry.get(os.environ.get("ALGORITHM")).load(model_dir(), threads=1)
    categorical = model.schema.categorical_indices
    codes = {j: dict(model.schema.codes(j)) for j in categorical}
    app = flask.Flask(__name__)

    @app.route("/ping", methods=["GET"])
    def ping():
        status = 200 if model is not None else 404
        return flask.Response(response="\n", status=status, mimetype="application/json")

    @app.route("/invocations", methods=["POST"])
    def transformation():
        if flask.request.content_type == "text/csv":
            data = flask.request.data.decode("utf-8")
            data = pd.read_csv(io.StringIO(data), header=None)
        else:
            return flask.Response(response="This predictor only supports CSV data", status=415, mimetype="text/plain")
        for j in categorical:  # the example had numeric features only; map levels to codes the plain way
            data[j] = data[j].map(codes[j])
        predictions = model.predict(data.to_numpy(dtype="float64"))
        out = io.StringIO()
        pd.DataFrame({"results": predictions}).to_csv(out, header=False, index=False)
        return flask.Response(response=out.getvalue(), status=200, mimetype="text/csv")

    return app


class NaiveServer(serve.Server):
    def load(self):
        return create_app()


if __name__ == "__main__":
    settings = serve.Settings()
    os.environ.setdefault("OMP_NUM_THREADS", str(settings.numeric_threads))
    NaiveServer(settings).run()
    sys.exit(0)
