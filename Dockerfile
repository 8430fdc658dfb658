# One image for every CityScore service: ingest, scorer and notifier run it with
# different commands (see docker-compose.yml and deploy/k8s/).
#
#   docker build -t cityscore .
#   docker run --rm cityscore cityscore --help
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLCONFIGDIR=/tmp/matplotlib

WORKDIR /app

# Dependencies first, read from pyproject.toml alone, so that a code change does not
# reinstall them. matplotlib draws the notifier's 90-day chart (services/notifier/chart.py)
# but is not among pyproject.toml's dependencies yet; naming it here is harmless once it is.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt matplotlib \
 && rm /tmp/requirements.txt

COPY shared/ shared/
COPY services/ services/
COPY deploy/gunicorn.conf.py deploy/gunicorn.conf.py

# Installed in place (-e): pyproject.toml's package data names only the catalogs, so a
# regular install would leave out the scorer's templates/ and static/ (the public board)
# and the migrations' script template. In place, every file under /app is used as is.
RUN pip install --no-deps -e . \
 && useradd --system --uid 10001 --user-group --home-dir /app --no-create-home --shell /usr/sbin/nologin cityscore

# Not root. Nothing under /app is written at run time; gunicorn's Prometheus files and
# matplotlib's cache go to /tmp (an emptyDir in Kubernetes, where the root is read-only).
USER 10001:10001

# ingest (gunicorn, BIND), scorer (--http-port), notifier (NOTIFIER_HTTP_PORT)
EXPOSE 8000 8001 8002

CMD ["cityscore", "--help"]
