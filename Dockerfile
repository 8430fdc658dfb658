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

# Pango and a font for WeasyPrint, which renders the monthly review packet's PDF.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core \
 && rm -rf /var/lib/apt/lists/*

# Dependencies first, so that a code change does not reinstall them: the part of
# requirements.lock (the lock `make install` and CI use) that pyproject.toml's runtime
# dependencies need, not the test tools; every download checked against the lock's
# hashes, nothing resolved anew, and `pip check` fails the build if that part lacks anything.
COPY pyproject.toml README.md requirements.lock ./
COPY deploy/locked-requirements.py deploy/locked-requirements.py
RUN python deploy/locked-requirements.py > /tmp/requirements.txt \
 && pip install --require-hashes --no-deps -r /tmp/requirements.txt \
 && pip check \
 && rm /tmp/requirements.txt

COPY shared/ shared/
COPY services/ services/
COPY deploy/gunicorn.conf.py deploy/gunicorn.conf.py

# Installed in place (-e): pyproject.toml's package data names only the catalogs, so a
# regular install would leave out the scorer's templates/ and static/ (the public board)
# and the migrations' script template. In place, every file under /app is used as is.
RUN pip install --no-deps -e . \
 && useradd --system --uid 10001 --user-group --home-dir /app --no-create-home --shell /usr/sbin/nologin cityscore \
 && install -d -o 10001 -g 10001 /var/lib/cityscore-pull

# Not root. Nothing under /app is written at run time; gunicorn's Prometheus files and
# matplotlib's cache go to /tmp (an emptyDir in Kubernetes, where the root is read-only).
USER 10001:10001

# ingest (gunicorn, BIND), scorer (--http-port), notifier (NOTIFIER_HTTP_PORT), the Open311 pull (--http-port;
# its cursor in /var/lib/cityscore-pull, owned by the user so that a volume mounted there is too)
EXPOSE 8000 8001 8002 8003

CMD ["cityscore", "--help"]
