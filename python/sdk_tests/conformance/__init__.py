"""Azure ML v1 conformance: v1-style scripts (written from azureml-core's public documentation) run
end to end through the ``azureml.core`` imports of berth-azureml, installed into a fresh virtual
environment, against a real server; plus the SDK's public signatures against azureml-core's."""
