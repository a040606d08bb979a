"""The forwarder: from the spool to Kafka, in spool order, never stopped by one record.

``forwarder.Forwarder`` is the loop (read committed frames, build records, publish, advance the
cursor). ``publisher`` hands records to aiokafka and knows which ones Kafka took (the one adapter over
aiokafka's batch API); ``delivery`` settles what Kafka refused (``refusals`` says what a refusal
means; ``topic_rules`` knows which timestamps a topic accepts). ``health`` is its state and the stall
rule; ``placement`` the one interface of its two placements (``process`` + ``child``, ``inline``).
"""
