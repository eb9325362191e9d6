"""The pure scoring core: rules, contact state and the engine. Imports nothing from Kafka or Faust."""
