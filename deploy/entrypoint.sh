#!/bin/sh
# One image, three roles:
#   scheduler ARGS…   -> dask scheduler ARGS…
#   worker ARGS…      -> dask worker ARGS…
#   anything else     -> run as given (cathodeflow run …, dask …, python …)
set -e
case "$1" in
    scheduler|worker) exec dask "$@" ;;
    "") exec cathodeflow --help ;;
    *) exec "$@" ;;
esac
