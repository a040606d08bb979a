"""The dead-letter topic as something to work with: ``tpipe dlq list|show|redrive|stats``.

* ``reader``  - ``read_dlq`` / ``iter_dlq``: every dead letter of ``<prefix>.dlq`` as a typed
  ``DlqRecord`` (the ``schemas.dlq`` headers decoded), filtered by ``DlqFilter``;
* ``redrive`` - ``plan_redrive`` (where each selected dead letter would go, or why not) and
  ``execute_redrive`` (send, then record it in the compacted ``<prefix>.dlq.redriven``: once only);
* ``stats``   - ``dlq_stats``: counts by worker and error type, overall and per hour or day;
* ``cli``     - the commands: flags and rendering only.

The functions return data and print nothing, so the operator console can show the same.
"""
