#!/usr/bin/env bash
# Install the Debian packages the project needs and this machine lacks, and nothing else.
#
#   deploy/debian-packages.sh demo   Java and Maven (the local Kafka broker), python3-venv
#   deploy/debian-packages.sh test   the same, plus PostgreSQL, Chromium and poppler-utils for the tests
#
# Used by `make demo` and by .ci/run. Needs root or sudo only when something is missing.
set -euo pipefail

purpose="${1:-test}"
need=()
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need+=(maven)  # fetches the Kafka jars from Maven Central
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
# WeasyPrint (the monthly review packet's PDF) needs Pango and a font
ldconfig -p 2>/dev/null | grep -q 'libpangoft2-1.0.so.0' || need+=(libpango-1.0-0 libpangoft2-1.0-0)
fc-list 2>/dev/null | grep -q . || need+=(fonts-dejavu-core)
if [ "$purpose" = test ]; then
  { command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || need+=(postgresql)
  # the scoreboard page is tested in a real headless browser
  command -v chromium >/dev/null || need+=(chromium)
  command -v chromedriver >/dev/null || need+=(chromium-driver)
  # the monthly review packet's PDF is read back as a reader would: pdftotext, pdftoppm
  command -v pdftotext >/dev/null || need+=(poppler-utils)
fi
[ ${#need[@]} -eq 0 ] && exit 0

echo "installing Debian packages: ${need[*]}" >&2
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "please install as root: apt-get install ${need[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq "${need[@]}" >/dev/null
