"""The central consumer: fault events from every gateway become SIARAN reports."""
