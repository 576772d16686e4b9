"""Helpers of the chaos tests: throwaway engines, worker processes, a balancing proxy, clients."""
