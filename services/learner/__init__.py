"""The learner service: trains on streamed transitions, publishes policies, checkpoints with offsets."""
