"""The studio server: a FastAPI app over the same request schema, studio and gallery as the CLI.

    app.py        create_app(settings): the app, its state, its workers' lifetime (started on startup)
    queue.py      the durable job queue in SQLite (or any SQLAlchemy database), leases for cluster workers
    worker.py     one worker thread per device (or the job runner of a cluster worker)
    cluster.py    scale-out: Celery over Redis to `designerbox worker` processes, events over pub/sub
    events.py     per-job event log (Server-Sent Events) and cancel flags
    submit.py     checking a request against the installed models, then queueing it
    routes/       one router per resource under /api/v1, plus the OpenAI and A1111 compatible APIs
    static/       the web page at /
    cli.py        `designerbox serve`, `designerbox worker`, users and keys

Importing any of these starts nothing.
"""
