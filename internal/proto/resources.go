package proto

import pb "trellis/internal/proto/trellisv1"

// MilliCores is r's cores in thousandths, rounded to the nearest: how the
// manager's core counts them, and so how a worker must count them to agree
// with it on what fits (runs held ahead).
func MilliCores(r *pb.Resources) int64 { return int64(r.GetCores()*1000 + 0.5) }
