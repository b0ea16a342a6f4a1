"""Reports, addenda and overreads: drafted, signed once, never changed after."""
