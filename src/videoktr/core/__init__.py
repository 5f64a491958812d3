"""videoktr.core"""
