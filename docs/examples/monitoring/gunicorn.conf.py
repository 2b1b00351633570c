# PROMETHEUS_MULTIPROC_DIR=/run/myapp-metrics gunicorn -c gunicorn.conf.py flask_app:app
# (an empty folder, emptied before each start: every worker writes its figures there)
import os
import shutil

from prometheus_client import multiprocess

bind = "127.0.0.1:8000"
worker_class = "ignitia_sync.gunicorn.Worker"
workers = 2


def on_starting(server):
    folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]  # a KeyError here: set it before gunicorn starts
    shutil.rmtree(folder, ignore_errors=True)  # the figures of the last run are not this run's
    os.makedirs(folder)


def child_exit(server, worker):
    multiprocess.mark_process_dead(worker.pid)  # also for a worker killed outright
