"""The gateway's own composite `cua` toolset, which uses the pipeline like any other client."""
